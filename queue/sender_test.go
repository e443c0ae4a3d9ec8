package queue_test

// The integration tests send through the real shipper: the queue's classification of errors is
// tested against the shipper's actual error type and real HTTP servers.

import (
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/shipper"
	"github.com/prometheus/client_golang/prometheus"
)

var _ queue.Sender = (*shipper.Client)(nil)

// newSender returns a shipper for url with a request timeout.
func newSender(url string, timeout time.Duration) queue.Sender {
	o := shipper.DefaultOptions()
	o.Timeout = timeout
	c, err := shipper.New(discardLogger(), prometheus.NewRegistry(), url, o)
	if err != nil {
		panic(err) // only a malformed URL or options: a bug in the test
	}
	return c
}
