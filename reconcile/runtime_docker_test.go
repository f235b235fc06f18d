package reconcile

import (
	"testing"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/providers/docker"
)

// TestDockerPathsMatchConfig: the planner writes config's paths into
// settings and plan text (config may import no provider), the docker
// provider works with its own; they must name the same places.
func TestDockerPathsMatchConfig(t *testing.T) {
	if config.DockerVolumeDir != docker.VolumeDir || config.DockerPGData != docker.PGData || config.DockerPort != docker.Port {
		t.Fatalf("config says volume %s, PGDATA %s, port %d; providers/docker says %s, %s, %d",
			config.DockerVolumeDir, config.DockerPGData, config.DockerPort, docker.VolumeDir, docker.PGData, docker.Port)
	}
}
