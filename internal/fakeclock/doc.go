// Package fakeclock provides a manually driven clock for tests.
//
// A [Clock] stands still until a test calls [Clock.Advance], which moves it
// forward and fires every timer that falls due, earliest first. Code under test
// receives the clock through a small interface (Now and After) in place of the
// time package, so a test can move through seconds of backoff in microseconds
// and never sleeps.
//
// To step a goroutine that waits on the clock, a test first waits until the
// goroutine has created its timer, then advances:
//
//	clk := fakeclock.New(time.Unix(0, 0))
//	go worker(clk)        // calls <-clk.After(time.Second)
//	clk.BlockUntil(1)     // the worker's timer is pending
//	clk.Advance(time.Second)
//
// All methods are safe for concurrent use.
package fakeclock
