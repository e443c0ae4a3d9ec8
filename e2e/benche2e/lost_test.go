package main

import (
	"testing"
	"time"
)

// TestLostScrapes: scrapes an agent never delivers are counted once the same number stays
// missing for three intervals while later scrapes arrive in full; a slow agent that catches
// up, one that delivers nothing, and a scrape being delivered are not.
func TestLostScrapes(t *testing.T) {
	const n, interval = 100, 15 * time.Second
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	type obs struct {
		sec      int // seconds after t0
		slots    int
		inFlight int
		received int64
	}
	for _, tc := range []struct {
		name string
		obs  []obs
		want int64 // at the last observation
	}{
		{"first scrape dropped, the next ones delivered", []obs{
			{0, 2, 0, 100}, {15, 3, 0, 200}, {20, 3, 0, 250}, {30, 4, 0, 300}, {45, 5, 0, 400},
		}, 100},
		{"too early: three intervals have not passed", []obs{
			{0, 2, 0, 100}, {15, 3, 0, 200}, {30, 4, 0, 300}, {44, 5, 0, 400},
		}, 0},
		{"a slow agent catching up", []obs{
			{0, 2, 0, 0}, {15, 3, 0, 100}, {30, 4, 0, 200}, {45, 5, 0, 400}, {60, 6, 0, 600},
		}, 0},
		{"nothing delivered", []obs{
			{0, 2, 0, 100}, {30, 2, 0, 100}, {60, 2, 0, 100},
		}, 0},
		{"a response being written", []obs{
			{0, 2, 0, 100}, {15, 3, 0, 200}, {30, 4, 0, 300}, {45, 5, 1, 400},
		}, 0},
		{"one scrape served", []obs{{0, 1, 0, 0}, {60, 1, 0, 0}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := lostScrapes{n: n, interval: interval}
			var got int64
			for _, o := range tc.obs {
				got = l.observe(o.slots, o.inFlight, o.received, t0.Add(time.Duration(o.sec)*time.Second))
			}
			if got != tc.want {
				t.Errorf("lost %d, want %d", got, tc.want)
			}
		})
	}
}
