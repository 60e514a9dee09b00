//go:build race

package store

// raceEnabled shortens the heaviest randomized tests under -race.
const raceEnabled = true
