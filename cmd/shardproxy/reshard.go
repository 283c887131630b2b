package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/resharding"
)

// reshardCmd is `shardproxy reshard plan|start|status|abort|resume`. The
// job runs in this process and keeps its state in the metadata database,
// so any process can resume, watch or abort it.
func reshardCmd(logger func() *slog.Logger) *cobra.Command {
	root := &cobra.Command{Use: "reshard", Short: "Move rows to a new shard map while clients keep writing"}
	var cur, to string
	var moveArgs []string
	var job int64
	var opts resharding.Options
	addMaps := func(c *cobra.Command, target bool) {
		c.Flags().StringVarP(&cur, "config", "c", "shardproxy.yaml", "current shard map (YAML)")
		if target {
			c.Flags().StringVar(&to, "to", "", "target shard map (YAML; default: the current map, for --move alone)")
			c.Flags().StringArrayVar(&moveArgs, "move", nil, "reassign a directory key: STRATEGY:KEY=SHARD (repeatable)")
		}
	}
	// target resolves --to and --move: one of them must say what changes.
	target := func() (string, []resharding.DirectoryMove, error) {
		moves, err := parseMoves(moveArgs)
		if err != nil {
			return "", nil, err
		}
		switch {
		case to != "":
			return to, moves, nil
		case len(moves) > 0:
			return cur, moves, nil
		}
		return "", nil, errors.New("say what changes: --to TARGET.yaml, --move STRATEGY:KEY=SHARD, or both")
	}
	addJob := func(c *cobra.Command) {
		c.Flags().Int64Var(&job, "job", 0, "job id (default: the latest job)")
	}
	addOpts := func(c *cobra.Command) {
		c.Flags().IntVar(&opts.BatchRows, "batch", 5000, "rows per copy batch and per cleanup delete")
		c.Flags().DurationVar(&opts.PauseBound, "pause-bound", 2*time.Second, "longest write pause at cutover before the switch; exceeded, the old map resumes and the cutover is retried (after the switch the pause lasts while the moved rows are deleted)")
		c.Flags().Int64Var(&opts.LagBytes, "lag", 64<<10, "replication lag (bytes) under which the cutover starts")
	}

	plan := &cobra.Command{
		Use:   "plan --config CURRENT (--to TARGET | --move STRATEGY:KEY=SHARD ...)",
		Short: "Print what would move, how much, and what stops the job; changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			to, moves, err := target()
			if err != nil {
				return err
			}
			c, n, err := loadMaps(cur, to)
			if err != nil {
				return err
			}
			p, err := resharding.NewPlan(cmd.Context(), c, n, moves)
			if err != nil {
				return err
			}
			p.Print(cmd.OutOrStdout())
			if len(p.Refusals) > 0 {
				return errors.New("the plan has refusals")
			}
			return nil
		},
	}
	addMaps(plan, true)

	start := &cobra.Command{
		Use:   "start --config CURRENT (--to TARGET | --move STRATEGY:KEY=SHARD ...)",
		Short: "Plan, then run a job to its end (resume it with `reshard resume` if interrupted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			to, moves, err := target()
			if err != nil {
				return err
			}
			curText, err := os.ReadFile(cur)
			if err != nil {
				return err
			}
			targetText, err := os.ReadFile(to)
			if err != nil {
				return err
			}
			id, p, err := resharding.Create(cmd.Context(), string(curText), string(targetText), moves)
			if p != nil {
				p.Print(cmd.ErrOrStderr())
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resharding job %d started\n", id)
			c, _, err := loadMaps(cur, "")
			if err != nil {
				return err
			}
			opts.Logger = logger()
			return runJob(cmd.Context(), cmd.OutOrStdout(), c.Metadata.DSN, id, opts)
		},
	}
	addMaps(start, true)
	addOpts(start)

	resume := &cobra.Command{
		Use:   "resume --config CURRENT [--job N]",
		Short: "Continue an interrupted job from the phase it reached",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, st, err := jobOf(cmd.Context(), cur, job)
			if err != nil {
				return err
			}
			opts.Logger = logger()
			return runJob(cmd.Context(), cmd.OutOrStdout(), dsn, st.ID, opts)
		},
	}
	addMaps(resume, false)
	addJob(resume)
	addOpts(resume)

	abort := &cobra.Command{
		Use:   "abort --config CURRENT [--job N]",
		Short: "Stop a job before its cutover; destinations cleaned, slots and publications dropped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, st, err := jobOf(cmd.Context(), cur, job)
			if err != nil {
				return err
			}
			if err := resharding.Abort(cmd.Context(), dsn, st.ID); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resharding job %d aborted; the old map keeps serving\n", st.ID)
			return nil
		},
	}
	addMaps(abort, false)
	addJob(abort)

	var watch bool
	status := &cobra.Command{
		Use:   "status --config CURRENT [--job N] [--watch]",
		Short: "Phase, rows copied/total, rate, ETA and replication lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := loadMaps(cur, "")
			if err != nil {
				return err
			}
			return showStatus(cmd.Context(), cmd.OutOrStdout(), c.Metadata.DSN, job, watch)
		},
	}
	addMaps(status, false)
	addJob(status)
	status.Flags().BoolVarP(&watch, "watch", "w", false, "refresh every second until the job ends")

	root.AddCommand(plan, start, resume, abort, status)
	return root
}

// parseMoves parses --move arguments (and the console's).
func parseMoves(args []string) ([]resharding.DirectoryMove, error) {
	var moves []resharding.DirectoryMove
	for _, a := range args {
		m, err := resharding.ParseDirectoryMove(a)
		if err != nil {
			return nil, err
		}
		moves = append(moves, m)
	}
	return moves, nil
}

func loadMaps(cur, to string) (*config.Config, *config.Config, error) {
	c, err := config.Load(cur)
	if err != nil {
		return nil, nil, err
	}
	if c.Metadata.DSN == "" {
		return nil, nil, fmt.Errorf("%s: resharding needs metadata.dsn (job state and epochs live there)", cur)
	}
	if to == "" {
		return c, nil, nil
	}
	n, err := config.Load(to)
	return c, n, err
}

// runJob runs the job and, meanwhile, prints its progress.
func runJob(ctx context.Context, w io.Writer, metaDSN string, id int64, opts resharding.Options) error {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		showStatus(ctx, w, metaDSN, id, true)
	}()
	err := resharding.Run(ctx, metaDSN, id, opts)
	stop()
	<-done
	if err != nil {
		return err
	}
	return showStatus(context.Background(), w, metaDSN, id, false)
}

// showStatus prints the job's status once, or every second until it ends
// (watch): a progress bar redrawn in place on a terminal, one line per
// second otherwise.
func showStatus(ctx context.Context, w io.Writer, metaDSN string, id int64, watch bool) error {
	tty := isTerminal(w)
	var prevRows int64
	var prevAt time.Time
	for {
		st, err := resharding.ReadStatus(ctx, metaDSN, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		copied := st.RowsCopied()
		rate := 0.0
		if !prevAt.IsZero() {
			rate = float64(copied-prevRows) / now.Sub(prevAt).Seconds()
		}
		prevRows, prevAt = copied, now
		line := statusLine(st, rate)
		if tty && watch {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
		end := st.Phase == resharding.PhaseDone || st.Phase == resharding.PhaseAborted
		if !watch || end {
			if tty && watch {
				fmt.Fprintln(w)
			}
			if st.Message != "" && !watch {
				fmt.Fprintf(w, "  %s\n", st.Message)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil
		case <-time.After(time.Second):
		}
	}
}

func statusLine(st *resharding.Status, rate float64) string {
	copied := st.RowsCopied()
	total := max(st.RowsTotal, 1)
	frac := min(float64(copied)/float64(total), 1)
	const width = 30
	bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
	eta := "-"
	if rate > 0 && copied < st.RowsTotal {
		eta = (time.Duration(float64(st.RowsTotal-copied)/rate) * time.Second).Round(time.Second).String()
	}
	lag := fmt.Sprintf("%d B", st.LagBytes())
	if st.Phase == resharding.PhaseCleanup || st.Phase == resharding.PhaseDone || st.Phase == resharding.PhaseAborted {
		lag = "-" // the streams ended at the switch; the last sample is stale
	}
	return fmt.Sprintf("job %d %-8s [%s] %d/%d rows (%.0f%%) %.0f rows/s eta %s lag %s applied %d changes",
		st.ID, st.Phase, bar, copied, st.RowsTotal, 100*frac, rate, eta, lag, st.RowsApplied())
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// reshardWatch wires the resharding protocol into the proxy's watcher.
func reshardWatch(metaDSN string, log *slog.Logger, apply func(*config.Config) error) proxy.ReshardWatch {
	return proxy.ReshardWatch{
		MetaDSN:     metaDSN,
		Channel:     resharding.Channel,
		Prepare:     resharding.EnsureSchema,
		PauseMargin: resharding.PauseMargin,
		Log:         log,
		Apply:       func(_ context.Context, cfg *config.Config) error { return apply(cfg) },
	}
}

// consoleJobs runs the jobs the admin console starts, one at a time, under
// the serve command's context; serve waits for it before it returns.
type consoleJobs struct {
	mu      sync.Mutex
	running bool
	wg      sync.WaitGroup
}

func (j *consoleJobs) start(ctx context.Context, log *slog.Logger, metaDSN string, id int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running {
		return &pgconn.PgError{Severity: "ERROR", Code: "55006", Message: "a resharding job is already running in this proxy"}
	}
	j.running = true
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		err := resharding.Run(ctx, metaDSN, id, resharding.Options{Logger: log})
		if err != nil {
			log.Error("resharding job stopped", "job", id, "err", err)
		} else {
			log.Info("resharding job finished", "job", id)
		}
		j.mu.Lock()
		j.running = false
		j.mu.Unlock()
	}()
	return nil
}

// reshardHook serves the console's RESHARD commands. path is the served
// config file, the current map.
func reshardHook(ctx context.Context, path string, log *slog.Logger, jobs *consoleJobs) proxy.ReshardHook {
	return func(cctx context.Context, args []string) ([]string, error) {
		usage := &pgconn.PgError{Severity: "ERROR", Code: "42601", Message: "usage: RESHARD PLAN|START <target.yaml> [strategy:key=shard ...] or RESHARD STATUS|ABORT|RESUME [job]",
			Hint: "a target of - keeps the current map (directory moves alone)"}
		if len(args) == 0 {
			return nil, usage
		}
		cur, _, err := loadMaps(path, "")
		if err != nil {
			return nil, err
		}
		meta := cur.Metadata.DSN
		var job int64
		verb := strings.ToUpper(args[0])
		if (verb == "STATUS" || verb == "ABORT" || verb == "RESUME") && len(args) == 2 {
			if job, err = strconv.ParseInt(args[1], 10, 64); err != nil {
				return nil, usage
			}
		}
		var targetPath string
		var moves []resharding.DirectoryMove
		if (verb == "PLAN" || verb == "START") && len(args) >= 2 {
			if targetPath = args[1]; targetPath == "-" {
				targetPath = path
			}
			if moves, err = parseMoves(args[2:]); err != nil {
				return nil, &pgconn.PgError{Severity: "ERROR", Code: "22023", Message: err.Error()}
			}
		}
		switch {
		case verb == "PLAN" && targetPath != "":
			c, n, err := loadMaps(path, targetPath)
			if err != nil {
				return nil, err
			}
			p, err := resharding.NewPlan(cctx, c, n, moves)
			if err != nil {
				return nil, err
			}
			var b strings.Builder
			p.Print(&b)
			return strings.Split(strings.TrimRight(b.String(), "\n"), "\n"), nil
		case verb == "START" && targetPath != "":
			curText, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			targetText, err := os.ReadFile(targetPath)
			if err != nil {
				return nil, err
			}
			id, _, err := resharding.Create(cctx, string(curText), string(targetText), moves)
			if err != nil {
				return nil, err
			}
			if err := jobs.start(ctx, log, meta, id); err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("resharding job %d started; SHOW RESHARD follows it", id)}, nil
		case verb == "RESUME" && len(args) <= 2:
			st, err := resharding.ReadStatus(cctx, meta, job)
			if err != nil {
				return nil, err
			}
			if err := jobs.start(ctx, log, meta, st.ID); err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("resharding job %d resumed from phase %s", st.ID, st.Phase)}, nil
		case verb == "ABORT" && len(args) <= 2:
			st, err := resharding.ReadStatus(cctx, meta, job)
			if err != nil {
				return nil, err
			}
			if err := resharding.Abort(cctx, meta, st.ID); err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("resharding job %d aborted; the old map keeps serving", st.ID)}, nil
		case verb == "STATUS" && len(args) <= 2:
			st, err := resharding.ReadStatus(cctx, meta, job)
			if errors.Is(err, resharding.ErrNoJob) {
				return []string{"no resharding job"}, nil
			}
			if err != nil {
				return nil, err
			}
			lines := []string{statusLine(st, 0)}
			if st.Message != "" {
				lines = append(lines, st.Message)
			}
			return lines, nil
		}
		return nil, usage
	}
}

// jobOf reads the current map's metadata DSN and the status of job (0:
// the newest), for the commands that act on an existing job.
func jobOf(ctx context.Context, cur string, job int64) (string, *resharding.Status, error) {
	c, _, err := loadMaps(cur, "")
	if err != nil {
		return "", nil, err
	}
	st, err := resharding.ReadStatus(ctx, c.Metadata.DSN, job)
	return c.Metadata.DSN, st, err
}
