//go:build race

package portolan

// raceEnabled scales load tests down under the race detector, which
// slows every lookup several times over.
const raceEnabled = true
