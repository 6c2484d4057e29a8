// Command prometheus serves Breakwater's metrics in Prometheus format while
// a simulated service calls a flaky dependency through a shared breaker
// with retries:
//
//	cd otel && go run ./examples/prometheus
//	curl -s localhost:9464/metrics | grep breakwater_
//
// Redis is embedded (miniredis) unless REDIS_URL is set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/alicebob/miniredis/v2"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/breakwater-go/breakwater/breaker"
	breakwaterotel "github.com/breakwater-go/breakwater/otel"
	"github.com/breakwater-go/breakwater/retry"
	"github.com/breakwater-go/breakwater/store"
)

func main() {
	addr := flag.String("addr", "localhost:9464", "where to serve /metrics")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	client, err := redisClient()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	a, err := newApp(client)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	go a.traffic(ctx, 100*time.Millisecond)

	srv := &http.Server{Addr: *addr, Handler: a.handler}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Printf("serving Breakwater's metrics on http://%s/metrics (Ctrl-C to stop)\n", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// redisClient connects to REDIS_URL, or to an embedded miniredis.
func redisClient() (*redis.Client, error) {
	if u := os.Getenv("REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		return redis.NewClient(o), nil
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, err
	}
	return redis.NewClient(&redis.Options{Addr: m.Addr()}), nil
}

// app is one instance of a service: a breaker and a retry policy on a
// dependency, measured by breakwaterotel and exported for Prometheus.
type app struct {
	handler  http.Handler
	provider *sdkmetric.MeterProvider
	store    *store.Store
	breaker  *breaker.Breaker
	policy   retry.Policy
}

func newApp(client redis.UniversalClient) (*app, error) {
	// A registry of its own, so that the example's test can run several.
	reg := prom.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	metrics, err := breakwaterotel.New(breakwaterotel.Options{MeterProvider: provider})
	if err != nil {
		return nil, err
	}
	st, err := store.New(client, store.Options{Prefix: "prometheus-example"})
	if err != nil {
		return nil, err
	}
	b, err := breaker.New("inventory", st, breaker.Settings{
		ConsecutiveFailures: 5,
		OpenDuration:        2 * time.Second,
		Observer:            metrics, // calls, rejections, transitions, state, store calls
	})
	if err != nil {
		return nil, err
	}
	return &app{
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		provider: provider,
		store:    st,
		breaker:  b,
		policy: retry.Policy{
			MaxAttempts: 3,
			BaseDelay:   10 * time.Millisecond,
			Gate:        b,                                     // stop retrying while the breaker is open
			OnEvent:     metrics.RetryEvents("inventory", nil), // attempts by number and outcome
		},
	}, nil
}

// call makes one call to the dependency, which fails with probability fail.
func (a *app) call(ctx context.Context, fail float64) error {
	_, err := retry.Do(ctx, a.policy, func(ctx context.Context) (int, error) {
		return breaker.Execute(ctx, a.breaker, func(context.Context) (int, error) {
			if rand.Float64() < fail {
				return 0, &retry.StatusError{StatusCode: http.StatusServiceUnavailable}
			}
			return 42, nil
		})
	})
	return err
}

// traffic calls the dependency every interval; it fails often for a few
// seconds of every ten.
func (a *app) traffic(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fail := 0.05
			if now.Sub(start)%(10*time.Second) < 3*time.Second {
				fail = 0.9
			}
			_ = a.call(ctx, fail)
		}
	}
}

func (a *app) Close() {
	_ = a.breaker.Close()
	_ = a.store.Close()
	_ = a.provider.Shutdown(context.Background())
}
