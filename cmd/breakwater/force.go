package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/breakwater-go/breakwater/breaker"
	"github.com/breakwater-go/breakwater/store"
)

type forceFlags struct {
	openFor time.Duration
	create  bool
	as      string
}

func forceCommand(name, what string) command {
	f := &forceFlags{}
	return command{
		name: name, args: "NAME", min: 1, max: 1,
		flags: func(fs *flag.FlagSet) {
			if name == "open" {
				fs.DurationVar(&f.openFor, "for", 0, "open for this long, then half-open by itself (default: until closed or reset)")
			}
			fs.BoolVar(&f.create, "create", false, "act on a breaker the store does not hold yet")
			fs.StringVar(&f.as, "as", "", "the instance `id` recorded as the one that made the change (default breakwater-cli:USER@HOST)")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			return c.force(ctx, name, args[0], f)
		},
	}
}

// force carries out an operator's command on one breaker for the whole
// fleet, through the breaker package as any instance would, and prints
// what changed.
func (c *cli) force(ctx context.Context, cmd, name string, f *forceFlags) error {
	if err := breaker.CheckName(name); err != nil {
		return usageError("%s: %v", cmd, err)
	}
	if f.openFor < 0 || f.openFor > 0 && f.openFor < time.Millisecond {
		return usageError("%s: --for %v: want at least 1ms", cmd, f.openFor)
	}
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	before, err := c.inspectOne(ctx, name)
	if err != nil {
		return err
	}
	switch {
	case before.Err != nil && cmd != "reset":
		return fmt.Errorf("breaker %q: %w; reset repairs it", name, before.Err)
	case !before.Exists && before.Err == nil && !f.create:
		return fmt.Errorf("%w %q under prefix %q (no state in %s); --create acts on it anyway", errUnknownBreaker, name, c.g.prefix, c.target.desc)
	}

	// A breaker made only for this command: the force script transitions
	// and changes no trip setting of the fleet.
	id := f.as
	if id == "" {
		id = cliInstance(c.env)
	}
	b, err := breaker.New(name, c.store, breaker.Settings{Instance: cleanID(id)})
	if err != nil {
		return usageError("%s: %v", cmd, err)
	}
	defer b.Close()
	switch {
	case cmd == "open" && f.openFor > 0:
		err = b.ForceOpenFor(ctx, f.openFor)
	case cmd == "open":
		err = b.ForceOpen(ctx)
	case cmd == "close":
		err = b.ForceClose(ctx)
	case cmd == "reset":
		err = b.Reset(ctx)
	case cmd == "disable":
		err = b.Disable(ctx)
	}
	if err != nil {
		return err
	}
	after, err := c.inspectOne(ctx, name)
	if err != nil {
		return err
	}
	if after.Err != nil {
		return fmt.Errorf("breaker %q after %s: %w", name, cmd, after.Err)
	}
	gen := func(s store.Status) string { return c.stableOr("<gen>", strconv.FormatInt(s.Generation, 10)) }
	color := c.g.colored(c.env, c.stdout)
	switch {
	case !before.Exists || before.Err != nil:
		fmt.Fprintf(c.stdout, "%s: (none) -> %s (generation %s)", name, paintState(color, after.State.String()), gen(after))
	case before.Generation == after.Generation:
		fmt.Fprintf(c.stdout, "%s: already %s (generation %s); nothing changed", name, paintState(color, after.State.String()), gen(after))
	default:
		fmt.Fprintf(c.stdout, "%s: %s -> %s (generation %s -> %s)", name, paintState(color, before.State.String()),
			paintState(color, after.State.String()), gen(before), gen(after))
	}
	if after.State == breaker.Open && after.NextProbeIn > 0 {
		fmt.Fprintf(c.stdout, "; next probe in %s", c.stableOr("<dur>", human(after.NextProbeIn)))
	}
	fmt.Fprintln(c.stdout)
	return nil
}

func (c *cli) inspectOne(ctx context.Context, name string) (store.Status, error) {
	sts, err := c.store.Inspect(ctx, store.InspectOptions{}, name)
	if err != nil {
		return store.Status{}, err
	}
	if len(sts) != 1 {
		return store.Status{}, errors.New("inspect: no status")
	}
	return sts[0], nil
}

// cliInstance names this run in the shared state: breakwater-cli:USER@HOST.
func cliInstance(e env) string {
	user := e.getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return "breakwater-cli:" + user + "@" + host
}
