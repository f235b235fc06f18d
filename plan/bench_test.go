package plan

import (
	"io"
	"testing"
)

// BenchmarkBuildAndRender measures the pure part of `pgha plan` (diff and
// text rendering) on a three-node cluster with one stopped standby.
func BenchmarkBuildAndRender(b *testing.B) {
	c := testCluster()
	s := converged(c)
	stop(s.Node("db2"))
	for b.Loop() {
		Text(io.Discard, Build(c, s))
	}
}
