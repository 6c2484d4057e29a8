package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	dnetwork "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
)

// Images of the example programs, built locally FROM scratch from static
// binaries of ./examples/service and ./examples/downstream with the
// Dockerfiles of deploy/service and deploy/downstream.
const (
	ServiceImage    = "breakwater-service:" + ImageTag
	DownstreamImage = "breakwater-downstream:" + ImageTag
)

// DownstreamAlias is the downstream's name on the front network; services
// reach it at http://downstream:8080.
const DownstreamAlias = "downstream"

// appPort is the port the example programs listen on in their containers.
const appPort = "8080/tcp"

// programs remembers the outcome of the one build of the programs' images.
var programs struct {
	sync.Mutex
	done bool
	err  error
}

// buildPrograms builds ServiceImage and DownstreamImage once per test
// binary.
func buildPrograms(ctx context.Context, p *testcontainers.DockerProvider) error {
	programs.Lock()
	defer programs.Unlock()
	if !programs.done {
		programs.err = buildProgram(ctx, p, "service", ServiceImage)
		if programs.err == nil {
			programs.err = buildProgram(ctx, p, "downstream", DownstreamImage)
		}
		programs.done = true
	}
	return programs.err
}

// buildProgram builds ./examples/<name> as a static binary into a build
// context with deploy/<name>/Dockerfile and builds it as image.
func buildProgram(ctx context.Context, p *testcontainers.DockerProvider, name, image string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "breakwater-"+name+"-image-")
	if err != nil {
		return fmt.Errorf("fleet: build %s: %w", image, err)
	}
	defer os.RemoveAll(dir)

	df, err := os.ReadFile(filepath.Join(root, "deploy", name, "Dockerfile"))
	if err != nil {
		return fmt.Errorf("fleet: build %s: %w", image, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		return fmt.Errorf("fleet: build %s: %w", image, err)
	}
	// deploy/service's Dockerfile copies CA certificates for rediss://;
	// the tests use plain redis:// and need none.
	if err := os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), nil, 0o644); err != nil {
		return fmt.Errorf("fleet: build %s: %w", image, err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("fleet: build %s: the go command is not on PATH: %w", image, err)
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", filepath.Join(dir, name), "./examples/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fleet: build %s: go build ./examples/%s: %w\n%s", image, name, err, out)
	}

	repo, tag, _ := strings.Cut(image, ":")
	var log strings.Builder
	_, err = p.BuildImage(ctx, &testcontainers.ContainerRequest{
		FromDockerfile: testcontainers.FromDockerfile{
			Context:        dir,
			Repo:           repo,
			Tag:            tag,
			KeepImage:      true,
			BuildLogWriter: io.Writer(&log),
		},
	})
	if err != nil {
		return fmt.Errorf("fleet: build %s: %w\n%s", image, err, log.String())
	}
	return nil
}

// buildTimeout bounds the programs' build: two go builds on a busy machine.
const buildTimeout = 5 * time.Minute

// Front is the network of a fleet's downstream and services: services are
// on it and on Redis's network, so that cutting one off Redis's network
// (Service.Disconnect) leaves it the downstream and its published port.
type Front struct {
	tb  testing.TB
	p   *testcontainers.DockerProvider
	net *testcontainers.DockerNetwork
	r   *Redis
}

// NewFront builds the programs' images if this test binary has not yet and
// creates the front network of a fleet around r. The network is removed
// when the test ends.
func NewFront(tb testing.TB, r *Redis) *Front {
	tb.Helper()
	p := provider(tb)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if err := buildPrograms(ctx, p); err != nil {
		tb.Fatal(err)
	}
	nw, err := network.New(ctx)
	testcontainers.CleanupNetwork(tb, nw)
	if err != nil {
		tb.Fatalf("fleet: create front network: %v", err)
	}
	return &Front{tb: tb, p: p, net: nw, r: r}
}

// app is a container of one of the example programs, published on a fixed
// port of 127.0.0.1 that survives Stop/Start and Disconnect/Connect.
type app struct {
	tb   testing.TB
	name string
	ctr  *testcontainers.DockerContainer
	cli  client.APIClient
	port int
}

// start runs image as name on the front network (and Redis's, when
// withRedis) with env, and returns once GET /healthz answers. It may run
// off the test's goroutine: it reports failure as an error.
func (f *Front) start(name, image string, env map[string]string, withRedis bool) (*app, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	a := &app{tb: f.tb, name: name, cli: f.p.Client()}
	var err error
	for attempt := 0; attempt < startAttempts; attempt++ {
		if a.port, err = freePort(); err != nil {
			break
		}
		opts := []testcontainers.ContainerCustomizer{
			testcontainers.WithEnv(env),
			testcontainers.WithExposedPorts(appPort),
			network.WithNetwork([]string{name}, f.net),
			testcontainers.WithHostConfigModifier(a.bindPort),
		}
		if withRedis {
			opts = append(opts, network.WithNetwork([]string{name}, f.r.net))
		}
		a.ctr, err = testcontainers.Run(ctx, image, opts...)
		testcontainers.CleanupContainer(f.tb, a.ctr)
		if err == nil || !portTaken(err) {
			break
		}
	}
	if err == nil {
		err = a.waitHealthy(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: start %s (%s): %w", name, image, err)
	}
	return a, nil
}

// waitHealthy polls GET /healthz on the published port until it answers
// 200. (testcontainers' HTTP wait needs a shell in the container, and the
// images have none.)
func (a *app) waitHealthy(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := a.do(http.MethodGet, "/healthz", nil)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not answer GET /healthz: %w", a.name, err)
		case <-tick.C:
		}
	}
}

func (a *app) bindPort(hc *container.HostConfig) {
	hc.PortBindings = dnetwork.PortMap{
		dnetwork.MustParsePort(appPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(a.port)}},
	}
}

// url returns the address of path on the published port.
func (a *app) url(path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port)) + path
}

// httpClient bounds every request of the tests to the programs.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// do sends a request and decodes a JSON answer into v (when not nil).
func (a *app) do(method, path string, v any) error {
	req, err := http.NewRequest(method, a.url(path), nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s %s: %w", a.name, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%s: %s %s: %s: %s", a.name, method, path, resp.Status, body)
	}
	if v == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %s %s: %w", a.name, method, path, err)
	}
	return nil
}

// Logs returns everything the container wrote, in every life.
func (a *app) Logs() string {
	a.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rc, err := a.ctr.Logs(ctx)
	if err != nil {
		a.tb.Fatalf("fleet: logs of %s: %v", a.name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		a.tb.Fatalf("fleet: logs of %s: %v", a.name, err)
	}
	return string(b)
}

// Stop stops the container: SIGTERM, then SIGKILL after timeout.
func (a *app) Stop(timeout time.Duration) {
	a.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout+timeout)
	defer cancel()
	if err := a.ctr.Stop(ctx, &timeout); err != nil {
		a.tb.Fatalf("fleet: stop %s: %v", a.name, err)
	}
}

// Start starts a stopped container again and returns once it answers.
func (a *app) Start() {
	a.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := a.ctr.Start(ctx); err != nil {
		a.tb.Fatalf("fleet: start %s: %v", a.name, err)
	}
	if err := a.waitHealthy(ctx); err != nil {
		a.tb.Fatalf("fleet: start %s: %v", a.name, err)
	}
}

// Downstream is a container of examples/downstream on the front network,
// reachable by the services as http://downstream:8080.
type Downstream struct{ *app }

// StartDownstream starts the downstream with env (see examples/downstream).
func (f *Front) StartDownstream(env map[string]string) *Downstream {
	f.tb.Helper()
	a, err := f.start(DownstreamAlias, DownstreamImage, env, false)
	if err != nil {
		f.tb.Fatal(err)
	}
	return &Downstream{a}
}

// DownstreamStats are the downstream's counts (GET /stats).
type DownstreamStats struct {
	Failing           bool  `json:"failing"`
	Requests          int64 `json:"requests"`
	Failures          int64 `json:"failures"`
	Successes         int64 `json:"successes"`
	Probes            int64 `json:"probes"`
	ProbeFailures     int64 `json:"probe_failures"`
	InFlight          int64 `json:"in_flight"`
	MaxInFlight       int64 `json:"max_in_flight"`
	MaxProbesInFlight int64 `json:"max_probes_in_flight"`
}

// Fail switches the downstream's failure on; query may set status and
// delay ("delay=300ms").
func (d *Downstream) Fail(query string) {
	d.tb.Helper()
	path := "/fail"
	if query != "" {
		path += "?" + query
	}
	if err := d.do(http.MethodPost, path, nil); err != nil {
		d.tb.Fatalf("fleet: %v", err)
	}
}

// Heal switches the downstream's failure off.
func (d *Downstream) Heal() {
	d.tb.Helper()
	if err := d.do(http.MethodPost, "/heal", nil); err != nil {
		d.tb.Fatalf("fleet: %v", err)
	}
}

// Stats returns the downstream's counts.
func (d *Downstream) Stats() DownstreamStats {
	d.tb.Helper()
	var s DownstreamStats
	if err := d.do(http.MethodGet, "/stats", &s); err != nil {
		d.tb.Fatalf("fleet: %v", err)
	}
	return s
}

// Service is a container of examples/service, on the front network and on
// Redis's.
type Service struct {
	*app
	f *Front

	mu           sync.Mutex
	disconnected bool
}

// StartServices starts n instances of examples/service at once, named
// prefix-1 to prefix-n (also their INSTANCE), calling the downstream at
// http://downstream:8080/api and sharing the Redis of the front; env adds
// to or overrides that (see examples/service).
func (f *Front) StartServices(prefix string, n int, env map[string]string) []*Service {
	f.tb.Helper()
	out := make([]*Service, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range out {
		name := fmt.Sprintf("%s-%d", prefix, i+1)
		e := map[string]string{
			"INSTANCE":       name,
			"REDIS_URL":      "redis://" + f.r.NetworkAddr() + "/0",
			"DOWNSTREAM_URL": "http://" + DownstreamAlias + ":8080/api",
		}
		for k, v := range env {
			e[k] = v
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var a *app
			a, errs[i] = f.start(name, ServiceImage, e, true)
			out[i] = &Service{app: a, f: f}
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			f.tb.Fatal(err)
		}
	}
	return out
}

// Status is what a service's GET /status returns (see examples/service).
type Status struct {
	Instance    string  `json:"instance"`
	Breaker     string  `json:"breaker"`
	State       string  `json:"state"`
	StoreUp     bool    `json:"store_up"`
	Shared      *Shared `json:"shared"`
	SharedError string  `json:"shared_error"`
	Calls       Calls   `json:"calls"`
	Events      Events  `json:"events"`
}

// Shared is the shared state as a service read it.
type Shared struct {
	State      string `json:"state"`
	Generation int64  `json:"generation"`
	Reason     string `json:"reason"`
	ChangedBy  string `json:"changed_by"`
	Counts     struct {
		TotalSuccesses uint64 `json:"total_successes"`
		TotalFailures  uint64 `json:"total_failures"`
		TotalStale     uint64 `json:"total_stale"`
		Trips          uint64 `json:"trips"`
	} `json:"counts"`
}

// Calls are a service's counts of its calls.
type Calls struct {
	Made      int64 `json:"made"`
	Rejected  int64 `json:"rejected"`
	Errored   int64 `json:"errored"`
	Admitted  int64 `json:"admitted"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Ignored   int64 `json:"ignored"`
	Probes    int64 `json:"probes"`
}

// Add returns the sum of c and d.
func (c Calls) Add(d Calls) Calls {
	return Calls{
		Made: c.Made + d.Made, Rejected: c.Rejected + d.Rejected, Errored: c.Errored + d.Errored,
		Admitted: c.Admitted + d.Admitted, Succeeded: c.Succeeded + d.Succeeded, Failed: c.Failed + d.Failed,
		Ignored: c.Ignored + d.Ignored, Probes: c.Probes + d.Probes,
	}
}

// Events count the breaker events a service heard.
type Events struct {
	Transitions      int64 `json:"transitions"`
	Trips            int64 `json:"trips"`
	StoreUnavailable int64 `json:"store_unavailable"`
	StoreRecovered   int64 `json:"store_recovered"`
	Unreported       int64 `json:"unreported"`
}

// Status returns the service's status, or an error when it does not answer.
func (s *Service) Status() (Status, error) {
	var st Status
	err := s.do(http.MethodGet, "/status", &st)
	return st, err
}

// Finals returns the final statuses the service logged when it stopped, one
// per life that ended, oldest first.
func (s *Service) Finals() []Status {
	s.tb.Helper()
	var out []Status
	sc := bufio.NewScanner(strings.NewReader(s.Logs()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		_, js, ok := strings.Cut(sc.Text(), ": final ")
		if !ok {
			continue
		}
		var st Status
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			s.tb.Fatalf("fleet: %s: final line %q: %v", s.name, js, err)
		}
		out = append(out, st)
	}
	return out
}

// Name returns the service's name, also its INSTANCE.
func (s *Service) Name() string { return s.name }

// Disconnect takes the service off Redis's network: it keeps its
// downstream and its published port, and loses Redis. Connect undoes it.
func (s *Service) Disconnect() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disconnected {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := s.cli.NetworkDisconnect(ctx, s.f.r.net.ID, client.NetworkDisconnectOptions{Container: s.ctr.GetContainerID(), Force: true})
	if err != nil {
		s.tb.Fatalf("fleet: disconnect %s from redis: %v", s.name, err)
	}
	s.disconnected = true
}

// Connect puts a disconnected service back on Redis's network.
func (s *Service) Connect() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.disconnected {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := s.cli.NetworkConnect(ctx, s.f.r.net.ID, client.NetworkConnectOptions{
		Container:      s.ctr.GetContainerID(),
		EndpointConfig: &dnetwork.EndpointSettings{Aliases: []string{s.name}},
	})
	if err != nil {
		s.tb.Fatalf("fleet: connect %s to redis: %v", s.name, err)
	}
	s.disconnected = false
}
