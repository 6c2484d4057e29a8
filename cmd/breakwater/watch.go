package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/breakwater-go/breakwater/store"
)

func watchCommand() command {
	return command{
		name: "watch", args: "[PATTERN]", min: 0, max: 1,
		run: func(ctx context.Context, c *cli, args []string) error {
			pattern := "*"
			if len(args) == 1 {
				pattern = args[0]
			}
			return c.watch(ctx, pattern)
		},
	}
}

// watch prints every transition of the breakers matching pattern until ctx
// is done. Announcements are hints: each one is followed by a read of the
// breaker's state, which is what is printed. Transitions are printed on
// stdout; news of the connection on stderr.
func (c *cli) watch(ctx context.Context, pattern string) error {
	// The pattern is checked before anything is printed.
	if _, err := c.inspectMatching(ctx, pattern); err != nil {
		return err
	}
	color := c.g.colored(c.env, c.stdout)
	seen := map[string]int64{} // generation last printed or read, per breaker
	subscribed := false
	var fatal error
	followCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := c.store.Follow(followCtx, func(a store.Announcement) {
		switch {
		case a.Err != nil:
			fmt.Fprintf(c.stderr, "%s  connection to %s lost: %v; reconnecting\n", c.timestamp(false), c.target.desc, a.Err)
		case a.Subscribed && !subscribed:
			// Read the state once subscribed, so that no transition falls
			// between the two.
			sts, err := c.inspectMatching(ctx, pattern)
			if err != nil {
				fatal = err
				cancel()
				return
			}
			for _, s := range sts {
				seen[s.Name] = s.Generation
			}
			subscribed = true
			fmt.Fprintf(c.stderr, "watching %s under prefix %q on %s: %d breakers now (Ctrl-C to stop)\n",
				quotePattern(pattern), c.g.prefix, c.target.desc, len(sts))
		case a.Subscribed:
			sts, err := c.inspectMatching(ctx, pattern)
			if err != nil {
				fmt.Fprintf(c.stderr, "%s  reconnected to %s, but the state could not be read: %v\n", c.timestamp(false), c.target.desc, err)
				return
			}
			missed := 0
			now := make(map[string]bool, len(sts))
			for _, s := range sts {
				now[s.Name] = true
				if s.Generation != seen[s.Name] {
					missed++
					seen[s.Name] = s.Generation
					c.printTransition(color, s, " (while disconnected)")
				}
			}
			var gone []string
			for name := range seen {
				if !now[name] {
					gone = append(gone, name)
					delete(seen, name)
				}
			}
			fmt.Fprintf(c.stderr, "%s  reconnected to %s; %d breakers changed while disconnected\n", c.timestamp(false), c.target.desc, missed)
			if len(gone) > 0 {
				// Redis came back without them: restarted empty, flushed,
				// or their keys expired. Their instances start them anew.
				sort.Strings(gone)
				fmt.Fprintf(c.stderr, "%s  %d breakers gone while disconnected (their keys are missing: Redis lost its data, or they expired): %s\n",
					c.timestamp(false), len(gone), quoteNames(gone))
			}
		case match(pattern, a.Name):
			if last, ok := seen[a.Name]; ok && a.Generation <= last {
				return // already printed
			}
			ictx, icancel := context.WithTimeout(ctx, c.g.timeout)
			sts, err := c.store.Inspect(ictx, store.InspectOptions{}, a.Name)
			icancel()
			if err == nil && sts[0].Err != nil {
				err = sts[0].Err
			}
			if err != nil {
				fmt.Fprintf(c.stdout, "%s  %s  generation %s announced; state unreadable: %v\n", c.timestamp(color), a.Name, c.stableOr("<gen>", strconv.FormatInt(a.Generation, 10)), err)
				return
			}
			s := sts[0]
			seen[a.Name] = max(s.Generation, a.Generation)
			if !s.Exists {
				fmt.Fprintf(c.stdout, "%s  %s  gone (its keys expired or were deleted)\n", c.timestamp(color), a.Name)
				return
			}
			c.printTransition(color, s, "")
		}
	})
	if fatal != nil {
		return fatal
	}
	return err
}

// quoteNames lists names, each quoted.
func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

func quotePattern(p string) string {
	if p == "*" {
		return "all breakers"
	}
	return "breakers matching " + strconv.Quote(p)
}

// inspectMatching lists and reads the breakers matching pattern.
func (c *cli) inspectMatching(ctx context.Context, pattern string) ([]store.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	names, err := c.store.List(ctx, pattern)
	if err != nil {
		return nil, err
	}
	sts, err := c.store.Inspect(ctx, store.InspectOptions{}, names...)
	if err != nil {
		return nil, err
	}
	out := sts[:0]
	for _, s := range sts {
		if s.Exists && s.Err == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// timestamp is the local time, to the millisecond.
func (c *cli) timestamp(color bool) string {
	return paint(color, dim, c.stableOr("<time>", c.env.now().Format("2006-01-02 15:04:05.000")))
}

// printTransition prints the last transition of s.
func (c *cli) printTransition(color bool, s store.Status, note string) {
	line := fmt.Sprintf("%s  %s -> %s  %s by %s  generation %s", s.Name, s.From, s.State, s.Reason, s.ChangedBy,
		c.stableOr("<gen>", strconv.FormatInt(s.Generation, 10)))
	if s.NextProbeIn > 0 {
		line += "  next probe in " + c.stableOr("<dur>", human(s.NextProbeIn))
	}
	fmt.Fprintf(c.stdout, "%s  %s%s\n", c.timestamp(color), paint(color, stateColor(s.State.String()), line), note)
}
