package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// goMemory is where a Go agent's memory is, from the go_memstats_* series of its /metrics: the
// part of RSS that is live heap and what the runtime keeps beside it.
type goMemory struct {
	HeapInuse, HeapIdle, HeapReleased, Stack, Sys, NextGC float64
}

// memstatNames maps the exposition names to the fields of goMemory.
var memstatNames = map[string]func(*goMemory) *float64{
	"go_memstats_heap_inuse_bytes":    func(m *goMemory) *float64 { return &m.HeapInuse },
	"go_memstats_heap_idle_bytes":     func(m *goMemory) *float64 { return &m.HeapIdle },
	"go_memstats_heap_released_bytes": func(m *goMemory) *float64 { return &m.HeapReleased },
	"go_memstats_stack_inuse_bytes":   func(m *goMemory) *float64 { return &m.Stack },
	"go_memstats_sys_bytes":           func(m *goMemory) *float64 { return &m.Sys },
	"go_memstats_next_gc_bytes":       func(m *goMemory) *float64 { return &m.NextGC },
}

// readGoMemory reads the go_memstats_* gauges from the text exposition at url.
func readGoMemory(url string) (goMemory, error) {
	var m goMemory
	cl := &http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if field, ok := memstatNames[name]; ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return m, fmt.Errorf("%s: %w", name, err)
			}
			*field(&m) = v
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found < len(memstatNames) {
		return m, fmt.Errorf("%s: %d of %d go_memstats series", url, found, len(memstatNames))
	}
	return m, nil
}

func (m goMemory) String() string {
	const mb = 1 << 20
	return fmt.Sprintf("heap in use %.0f MiB, idle %.0f MiB (%.0f MiB released to the OS), stacks %.0f MiB, runtime total %.0f MiB, next GC at %.0f MiB",
		m.HeapInuse/mb, m.HeapIdle/mb, m.HeapReleased/mb, m.Stack/mb, m.Sys/mb, m.NextGC/mb)
}
