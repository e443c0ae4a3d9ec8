package queue_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

type exampleSender struct{}

func (exampleSender) Send(context.Context, []queue.Series) error { return nil }

// The agent: one queue per endpoint over the cluster's WAL, each registered as a WAL consumer so
// that truncation waits for it. The first signal drains (FlushDeadline), a second one aborts.
func Example_agent() {
	logger := logrus.New()
	reg := prometheus.NewRegistry()
	wopts := wal.DefaultOptions()
	wopts.Consumers = []string{"hub"}
	w, err := wal.Open(logger, reg, os.TempDir(), "cluster-1", wopts)
	if err != nil {
		logger.Fatal(err)
	}
	defer w.Close()

	opts := queue.DefaultOptions()
	opts.Consumer = "hub" // the endpoint's name
	endpointReg := prometheus.WrapRegistererWith(prometheus.Labels{"cluster_id": "cluster-1", "endpoint": "hub"}, reg)
	q, err := queue.New(logger, endpointReg, w, exampleSender{} /* *shipper.Client */, opts)
	if err != nil {
		logger.Fatal(err)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel() // drain: stop reading, flush until FlushDeadline
		<-sigs
		q.Abort() // hard stop: cancel the requests in flight
	}()
	if err := q.Run(ctx); err != nil {
		logger.WithError(err).Error("queue stopped")
	}
}

// Replay: everything retained, a time range, to another endpoint, beside a running agent (which
// holds the WAL's lock: DirSource reads the files without it), leaving every position alone.
func Example_replay() {
	opts := queue.DefaultOptions()
	opts.Consumer = "replay"
	opts.StopAtEnd = true
	opts.NoCommit = true
	opts.StartAt = &wal.Position{} // the oldest retained segment
	opts.MinTime = time.Now().Add(-6 * time.Hour).UnixMilli()
	opts.MaxTime = time.Now().UnixMilli()
	q, err := queue.New(logrus.New(), prometheus.NewRegistry(), queue.DirSource("/var/lib/collector/wal/cluster-1"), exampleSender{}, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			st := q.Stats()
			fmt.Println(err, st.Delivered, st.Dropped, st.Filtered, st.Pending)
			return
		case <-tick.C:
			st := q.Stats()
			fmt.Printf("at %v: %d delivered, %d pending\n", st.Position, st.Delivered, st.Pending)
		}
	}
}
