package router

// TEMPORARY stubs of the planner/executor API, deleted when they land.

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
)

const MergePlan MergeKind = 100

type Source interface{ Next() ([][]byte, error) }
type ParamFunc func(n int) (text []byte, null bool, err error)
type ExecOptions struct{ Budget int64 }

func (p *ScatterPlan) OutputFields(shard []pgproto3.FieldDescription) ([]pgproto3.FieldDescription, error) {
	return shard, nil
}
func CheckFields(a, b []pgproto3.FieldDescription) error { return nil }
func (p *ScatterPlan) Execute(ctx context.Context, fields []pgproto3.FieldDescription, srcs []Source, param ParamFunc, opts ExecOptions, emit func(row [][]byte) error) (int64, error) {
	return 0, nil
}
func (r *Router) Literals(sql string) []string { return nil }
