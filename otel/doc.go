// Package breakwaterotel records Breakwater's metrics through the
// OpenTelemetry metric API.
package breakwaterotel
