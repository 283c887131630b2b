package app

import (
	"context"
	"fmt"
)

// Seed creates customers 1..customers with credit each, and products
// 1..products in the catalog (price) with stock each. Idempotent.
func (s *Service) Seed(ctx context.Context, customers int, credit int64, products int, stock, price int64) error {
	for c := 1; c <= customers; c++ {
		if err := s.Payment.Open(ctx, int64(c), fmt.Sprintf("customer %d", c), credit); err != nil {
			return fmt.Errorf("seed customer %d: %w", c, err)
		}
	}
	for p := 1; p <= products; p++ {
		// The catalog is a reference table: this write is broadcast.
		if _, err := s.Pool.Exec(ctx, `INSERT INTO product_catalog (product_id, name, price) VALUES ($1, $2, $3)
			ON CONFLICT (product_id) DO NOTHING`, int64(p), fmt.Sprintf("product %d", p), price); err != nil {
			return fmt.Errorf("seed catalog %d: %w", p, err)
		}
		if err := s.Inventory.Open(ctx, int64(p), fmt.Sprintf("product %d", p), stock); err != nil {
			return fmt.Errorf("seed product %d: %w", p, err)
		}
	}
	return nil
}
