package wal

// The lifecycle of a series in the writer (FORMAT.md, "Series across truncation"):
//
//   - Ref creates it (not yet written); the first Commit with a sample of it writes its Series
//     record.
//   - Truncation writes into the checkpoint the series with a sample (or definition) after the
//     cut. The others lose their definition: they are orphans, still known by ref and labels, and
//     a Commit with a sample of one writes its Series record again, under the same ref.
//   - An orphan is freed (its ref and labels forgotten) only when nothing can present its ref
//     again: no cache holds it (HoldSeries/ReleaseSeries) and every appender open since its last
//     use (Ref, ReleaseSeries) has ended. Freed refs are never issued again by this process.
//
// Holding refs outside the WAL is therefore safe as long as the holder brackets it: HoldSeries
// before the ref can be used again, ReleaseSeries after the holder stopped handing it out, and
// every scrape that may use a held ref runs inside Begin ... Commit/Rollback.

// ShareLabels returns the writer's copy of the labels of series ref if they are enc (their
// encoding, AppendLabels), so that a reader in the writer's process (a queue per endpoint) keeps
// no label data of its own: the label data of a WAL is in memory once, however many readers
// follow it (ReaderOptions.ShareLabels). It returns false for a series the writer does not know,
// or knows with other labels (a foreign directory). Safe for concurrent use.
func (w *WAL) ShareLabels(ref SeriesRef, enc []byte) (string, bool) {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	if ms := w.series.get(ref); ms != nil && ms.enc == string(enc) {
		return ms.enc, true
	}
	return "", false
}

// Begin opens a scrape: refs obtained after Begin from a holder (HoldSeries) stay valid until
// Commit or Rollback, even if the holder releases them meanwhile. Ref begins implicitly.
func (a *Appender) Begin() {
	a.w.mtx.Lock()
	defer a.w.mtx.Unlock()
	a.beginLocked()
}

func (a *Appender) beginLocked() {
	if a.open {
		return
	}
	a.open, a.epoch = true, a.w.epoch
	a.w.active[a.epoch]++
}

// end closes the scrape opened by Begin or Ref, if any.
func (a *Appender) end() {
	if !a.open {
		return
	}
	w := a.w
	w.mtx.Lock()
	defer w.mtx.Unlock()
	a.open = false
	if w.active[a.epoch]--; w.active[a.epoch] <= 0 {
		delete(w.active, a.epoch)
	}
}

// HoldSeries marks refs as held by a cache: they are not freed, whatever truncation deletes,
// until ReleaseSeries. Unknown refs (0, never issued) are ignored. Each ref must be released as
// many times as it was held.
func (w *WAL) HoldSeries(refs []SeriesRef) {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	for _, ref := range refs {
		if ms := w.series.get(ref); ms != nil {
			ms.holders++
		}
	}
}

// ReleaseSeries undoes HoldSeries. The holder must no longer hand the refs out; scrapes already
// open (Begin) may still commit samples of them.
func (w *WAL) ReleaseSeries(refs []SeriesRef) {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	for _, ref := range refs {
		if ms := w.series.get(ref); ms != nil && ms.holders > 0 {
			ms.holders--
			ms.used = w.epoch
		}
	}
}

// freeableLocked says whether an orphan can be forgotten: no holder, and no appender open since
// its last use. An appender that began in a later epoch than that use began after it, so it got
// the ref neither from Ref (which would have renewed the use) nor from a holder (which had
// released it before).
func (w *WAL) freeableLocked(ms *memSeries) bool {
	if ms.holders > 0 {
		return false
	}
	for e := range w.active {
		if e <= ms.used {
			return false
		}
	}
	return true
}

// dropSeriesLocked forgets a freed orphan. Its ref is never issued again by this process.
func (w *WAL) dropSeriesLocked(ref SeriesRef) {
	ms := w.series.get(ref)
	if ms == nil {
		return
	}
	w.byHash.remove(w.hashLabels(ms.enc), ref)
	w.series.del(ref)
}

// compactSeriesLocked gives back the memory of freed series: the ref table's, and byHash's once
// it holds less than half of its peak (Go maps never shrink).
func (w *WAL) compactSeriesLocked() {
	w.series.compact()
	w.byHash.compact()
}
