package proxy

import "testing"

func TestTimeZoneSetting(t *testing.T) {
	tests := []struct {
		sqlValue string // as SET or the startup packet left it in params
		want     string // location name; "" for nil
	}{
		{"'America/New_York'", "America/New_York"},
		{`"Europe/Berlin"`, "Europe/Berlin"},
		{"'UTC'", "UTC"},
		{"utc", "UTC"},   // a bare identifier, lower-cased by Postgres
		{"'gmt'", "UTC"}, // Postgres matches zone names in any case
		{"'Etc/GMT+5'", "Etc/GMT+5"},
		{"'<+03>-3'", ""}, // a POSIX string: Go cannot load it
		{"'PST'", ""},     // an abbreviation, not a tz database zone
		{"-5", ""},        // SET TIME ZONE -5: an offset in hours
		{"INTERVAL '-08:00' HOUR TO MINUTE", ""},
		{"'localtime'", ""},
		{"''", ""},
		{"'../../etc/passwd'", ""},
	}
	for _, tc := range tests {
		t.Run(tc.sqlValue, func(t *testing.T) {
			loc := loadTimeZone(settingText(tc.sqlValue))
			switch {
			case tc.want == "" && loc != nil:
				t.Errorf("loaded %v, want nil", loc)
			case tc.want != "" && (loc == nil || loc.String() != tc.want):
				t.Errorf("loaded %v, want %s", loc, tc.want)
			}
		})
	}
}

// The location follows the session's setting, else the server's.
func TestSessionTimeZoneFollowsSettings(t *testing.T) {
	s := &session{srv: &Server{}, params: map[string]string{}}
	if loc := s.timeZone(); loc != nil {
		t.Fatalf("no setting and no server value: got %v, want nil", loc)
	}
	s.srv.serverParams.Store(&map[string]string{"TimeZone": "Europe/Paris"})
	for _, step := range []struct {
		set  string // "" deletes the session's setting (RESET)
		want string
	}{
		{"", "Europe/Paris"},
		{"'America/New_York'", "America/New_York"},
		{"'Asia/Tokyo'", "Asia/Tokyo"},
		{"'<+03>-3'", ""},
		{"", "Europe/Paris"},
	} {
		if step.set == "" {
			delete(s.params, "timezone")
		} else {
			s.params["timezone"] = step.set
		}
		loc := s.timeZone()
		got := ""
		if loc != nil {
			got = loc.String()
		}
		if got != step.want {
			t.Errorf("after SET %q: location %q, want %q", step.set, got, step.want)
		}
	}
}
