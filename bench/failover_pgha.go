package main

import (
	"context"
	"errors"
)

type pghaCluster struct{ baseline }

func (c *pghaCluster) label() (string, string, string)    { return "pgha watch", "", "" }
func (c *pghaCluster) crash(int) error                    { return nil }
func (c *pghaCluster) recover(context.Context, int) error { return nil }
func (c *pghaCluster) healthy(context.Context) error      { return nil }
func startPgha(ctx context.Context, bin, rt, image, crash string) (*pghaCluster, error) {
	return nil, errors.New("pgha watch is not on main yet")
}
