package queue

import (
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	w := openWAL(t)
	s := newFakeSender(nil)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no consumer", func(o *Options) { o.Consumer = "" }},
		{"path in consumer", func(o *Options) { o.Consumer = "a/b" }},
		{"no samples per send", func(o *Options) { o.MaxSamplesPerSend = 0 }},
		{"capacity below a batch", func(o *Options) { o.Capacity = o.MaxSamplesPerSend - 1 }},
		{"max shards below min", func(o *Options) { o.MinShards, o.MaxShards = 3, 2 }},
		{"jitter of one", func(o *Options) { o.BackoffJitter = 1 }},
		{"empty time range", func(o *Options) { o.MinTime, o.MaxTime = 10, 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions("ep")
			tc.mod(&o)
			if _, err := New(testLogger(), nil, w, s, o); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := New(testLogger(), nil, w, s, fastOptions("ep")); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultOptionsValid(t *testing.T) {
	o := DefaultOptions()
	o.Consumer = "ep"
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if o.MaxSamplesPerSend != 5000 || o.Capacity != 10000 || o.BatchSendDeadline.Seconds() != 5 || o.MinShards != 1 || o.MaxShards != 50 || o.SampleAgeLimit != 0 || o.FlushDeadline != 15*time.Second {
		t.Fatalf("defaults changed without updating the documentation: %+v", o)
	}
}
