//go:build !race

package portolan

const raceEnabled = false
