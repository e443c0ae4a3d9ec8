package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports (the kernel exports 100 whatever its internal HZ).
const clockTicks = 100

// procUsage is what the harness reads of a process from /proc.
type procUsage struct {
	CPUSeconds float64 // utime + stime of every thread so far
	SysSeconds float64 // stime alone: the part of CPUSeconds spent in the kernel
	PeakRSS    int64   // VmHWM, bytes
	RSS        int64   // VmRSS, bytes
}

// readUsage reads the CPU time and memory of process pid.
func readUsage(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	user, sys, err := parseStatCPU(stat)
	if err != nil {
		return procUsage{}, fmt.Errorf("parse stat of %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	hwm, rss, err := parseStatusMemory(status)
	if err != nil {
		return procUsage{}, fmt.Errorf("parse status of %d: %w", pid, err)
	}
	return procUsage{CPUSeconds: user + sys, SysSeconds: sys, PeakRSS: hwm, RSS: rss}, nil
}

// parseStatCPU returns utime and stime in seconds from the text of /proc/PID/stat. The command name
// (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (user, sys float64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no ')' in %q", stat)
	}
	// After ')': field 3 (state) is the first; utime and stime are fields 14 and 15.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("utime %q: %w", f[11], err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stime %q: %w", f[12], err)
	}
	return float64(utime) / clockTicks, float64(stime) / clockTicks, nil
}

// parseStatusMemory returns VmHWM and VmRSS in bytes from the text of /proc/PID/status.
func parseStatusMemory(status []byte) (hwm, rss int64, err error) {
	var haveHWM, haveRSS bool
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected value %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		if k == "VmHWM" {
			hwm, haveHWM = n*1024, true
		} else {
			rss, haveRSS = n*1024, true
		}
	}
	if !haveHWM || !haveRSS {
		return 0, 0, fmt.Errorf("no VmHWM or VmRSS line")
	}
	return hwm, rss, nil
}
