package replay

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"
)

// progress shows a replay's progress: a line redrawn in place on a terminal, a log line every
// 10 seconds otherwise.
type progress struct {
	w       io.Writer
	log     logrus.FieldLogger
	total   int64
	start   time.Time
	lastLog time.Time
	tty     bool
	now     func() time.Time
}

func newProgress(w io.Writer, log logrus.FieldLogger, total int64, clock func() time.Time) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	now := clock()
	return &progress{w: w, log: log, total: total, start: now, lastLog: now, tty: tty, now: clock}
}

func (p *progress) line(done int64) string {
	el := p.now().Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	pct, eta := 100.0, "-"
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
		if rate > 0 && done < p.total {
			eta = (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
		}
	}
	return fmt.Sprintf("%d/%d samples (%.1f%%), %.0f samples/s, ETA %s", done, p.total, pct, rate, eta)
}

func (p *progress) update(done int64) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s   ", p.line(done))
		return
	}
	if now := p.now(); now.Sub(p.lastLog) >= 10*time.Second {
		p.lastLog = now
		p.log.Info("replay progress: " + p.line(done))
	}
}

func (p *progress) finish(done int64) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\n", p.line(done))
	}
}
