//go:build !linux

package handover

// exchange swaps the folders at a and b. Without an atomic exchange call
// it takes three renames, and a crash between them leaves a's path empty
// for a moment (the journal tells the next start what to put back).
func exchange(a, b string) error { return exchangeByRenames(a, b) }
