package ingest

import "testing"

// FuzzParseDifferential: the text parser accepts exactly what textparse accepts and yields the
// same samples, except where it is stricter for a documented reason (see textParser). Seed
// corpus in testdata/fuzz/FuzzParseDifferential, plus parseCases.
func FuzzParseDifferential(f *testing.F) {
	for _, c := range parseCases() {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDifferential(t, b)
	})
}
