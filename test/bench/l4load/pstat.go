package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// cmdPstat prints the memory, descriptors and CPU time of a process and of
// all its descendants (sslh-fork serves each connection in a child):
//
//	pss_kb  sum of Pss from /proc/P/smaps_rollup (shared pages split between sharers)
//	rss_kb  sum of VmRSS from /proc/P/status (shared pages counted in each process)
//	fds     sum of the entries of /proc/P/fd
//	cpu_ms  user+system time of the live processes and of the children they reaped
func cmdPstat(args []string) error {
	fs := flag.NewFlagSet("pstat", flag.ExitOnError)
	pid := fs.Int("pid", 0, "root process")
	children := fs.Bool("children", true, "include descendants")
	clk := fs.Int("clk", 100, "clock ticks per second (getconf CLK_TCK)")
	fs.Parse(args)
	if *pid <= 0 {
		return errors.New("need -pid")
	}
	pids := []int{*pid}
	if *children {
		pids = append(pids, descendants(*pid)...)
	}
	var pss, rss, fds, ticks, threads int64
	procs := 0
	for i, p := range pids {
		st, err := readStat(p)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("pid %d: %w", p, err)
			}
			continue // a child that just exited
		}
		procs++
		// A live process's c-times hold the children it reaped (dead):
		// no overlap with the live processes counted here.
		ticks += st.utime + st.stime + st.cutime + st.cstime
		threads += st.threads
		pss += rollupPss(p)
		rss += statusField(p, "VmRSS:")
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p)); err == nil {
			fds += int64(len(ents))
		}
	}
	result("pid", *pid, "procs", procs, "threads", threads, "pss_kb", pss, "rss_kb", rss, "fds", fds,
		"cpu_ms", ticks*1000/int64(*clk))
	return nil
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
	threads                      int64
}

// readStat parses /proc/P/stat (the command name may hold spaces and
// parentheses: fields are counted after the last ')').
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 18 {
		return procStat{}, errors.New("short stat")
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return procStat{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17), threads: num(20)}, nil
}

// descendants lists the processes below root, from a scan of /proc.
func descendants(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			kids[st.ppid] = append(kids[st.ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 && len(out) < 1<<16 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, kids[p]...)
		queue = append(queue, kids[p]...)
	}
	return out
}

func rollupPss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	return fieldKB(string(b), "Pss:")
}

func statusField(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return fieldKB(string(b), key)
}

// fieldKB finds "key  123 kB" at the start of a line.
func fieldKB(text, key string) int64 {
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// cmdMemStats reads a Go process's runtime memory statistics from its
// expvar endpoint (only the profiling build of portmux has one), after
// asking for a GC through the heap profile endpoint, and its goroutine count.
func cmdMemStats(args []string) error {
	fs := flag.NewFlagSet("memstats", flag.ExitOnError)
	base := fs.String("url", "", "http://host:port of the debug listener")
	fs.Parse(args)
	client := &http.Client{Timeout: 20 * time.Second}
	get := func(path string) ([]byte, error) {
		resp, err := client.Get(*base + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", path, resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	}
	if _, err := get("/debug/pprof/heap?gc=1"); err != nil {
		return err
	}
	b, err := get("/debug/vars")
	if err != nil {
		return err
	}
	var vars struct {
		MemStats struct {
			HeapInuse, HeapAlloc, StackInuse, Sys, HeapSys, StackSys, MSpanInuse, OtherSys, GCSys uint64
			NumGC                                                                                 uint32
		} `json:"memstats"`
	}
	if err := json.Unmarshal(b, &vars); err != nil {
		return err
	}
	g, err := get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err
	}
	goroutines := 0
	if line, _, _ := strings.Cut(string(g), "\n"); strings.HasPrefix(line, "goroutine profile: total ") {
		goroutines, _ = strconv.Atoi(strings.TrimPrefix(line, "goroutine profile: total "))
	}
	m := vars.MemStats
	result("goroutines", goroutines, "heap_inuse", m.HeapInuse, "heap_alloc", m.HeapAlloc,
		"stack_inuse", m.StackInuse, "mspan_inuse", m.MSpanInuse, "sys", m.Sys, "num_gc", m.NumGC)
	return nil
}

// cmdFetch saves what a URL answers (profiles of the profiling build).
func cmdFetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	url := fs.String("url", "", "URL to get")
	out := fs.String("o", "", "file to write")
	timeout := fs.Duration("timeout", time.Minute, "bound of the request")
	fs.Parse(args)
	resp, err := (&http.Client{Timeout: *timeout}).Get(*url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", *url, resp.Status)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 256<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
