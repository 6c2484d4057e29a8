package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/testcontainers/testcontainers-go"
)

// Image is the tag of the Redis image built from the host's redis-server.
const Image = ImageRepo + ":" + ImageTag

// ImageRepo and ImageTag make up Image.
const (
	ImageRepo = "breakwater-redis"
	ImageTag  = "test"
)

// Files of the repository the image is built from, relative to its root.
const (
	rootfsScript = "scripts/redis-rootfs.sh"
	dockerfile   = "deploy/redis/Dockerfile"
)

// build remembers the outcome of the one image build of a test binary.
var build struct {
	sync.Mutex
	done bool
	err  error
}

// buildImage builds Image once per test binary; later calls return the
// first call's outcome.
func buildImage(ctx context.Context, p *testcontainers.DockerProvider) error {
	build.Lock()
	defer build.Unlock()
	if !build.done {
		build.err = buildImageOnce(ctx, p)
		build.done = true
	}
	return build.err
}

// buildImageOnce prepares a build context in a temporary directory with the
// repository's script and Dockerfile and builds it as Image.
func buildImageOnce(ctx context.Context, p *testcontainers.DockerProvider) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "breakwater-redis-image-")
	if err != nil {
		return fmt.Errorf("fleet: build %s: %w", Image, err)
	}
	defer os.RemoveAll(dir)

	df, err := os.ReadFile(filepath.Join(root, dockerfile))
	if err != nil {
		return fmt.Errorf("fleet: build %s: %w", Image, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		return fmt.Errorf("fleet: build %s: %w", Image, err)
	}
	out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, rootfsScript), dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fleet: build %s: %s: %w\n%s", Image, rootfsScript, err, out)
	}

	var log strings.Builder
	_, err = p.BuildImage(ctx, &testcontainers.ContainerRequest{
		FromDockerfile: testcontainers.FromDockerfile{
			Context:        dir,
			Repo:           ImageRepo,
			Tag:            ImageTag,
			KeepImage:      true,
			BuildLogWriter: io.Writer(&log),
		},
	})
	if err != nil {
		return fmt.Errorf("fleet: build %s: %w\n%s", Image, err, log.String())
	}
	return nil
}

// repoRoot returns the repository's root: the nearest directory above the
// working directory (a test's package directory) that holds the image's
// build files.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("fleet: find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, dockerfile)); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("fleet: find repository root: no " + dockerfile + " above the working directory")
		}
		dir = parent
	}
}

// requireRedisServer skips or fails the test when the host has no
// redis-server to build the image from.
func requireRedisServer(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err == nil {
		return
	}
	msg := "fleet: redis-server not found on PATH; the Redis image is built from it: install it (apt-get install redis-server) or run make test"
	if os.Getenv(RequireDockerEnv) == "1" || os.Getenv("BREAKWATER_REQUIRE_REDIS") == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}
