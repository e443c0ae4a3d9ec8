package backfill_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collector-dev/collector/queue/backfill"
)

// TestNewBucket opens each kind of configuration Thanos' objstore/client takes and checks what
// reaches the provider: the type in any case, the config section, the prefix.
func TestNewBucket(t *testing.T) {
	root := t.TempDir()
	bkt, err := backfill.NewBucket([]byte("type: filesystem\nconfig:\n  directory: " + root + "\nprefix: tenant-a\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	if err := bkt.Upload(context.Background(), "01ABC/meta.json", strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "tenant-a", "01ABC", "meta.json"))
	if err != nil || !bytes.Equal(got, []byte("{}")) {
		t.Fatalf("object under the prefix: %q, %v", got, err)
	}

	// An S3 configuration reaches the S3 provider (which builds its client without a request).
	s3, err := backfill.NewBucket([]byte("type: S3\nconfig:\n  bucket: blocks\n  endpoint: 127.0.0.1:9\n  access_key: a\n  secret_key: b\n  insecure: true\n"))
	if err != nil {
		t.Fatalf("S3: %v", err)
	}
	if s3.Provider() != "S3" || s3.Name() != "blocks" {
		t.Errorf("S3 bucket: provider %s, name %s", s3.Provider(), s3.Name())
	}
	s3.Close()
}

func TestNewBucketRefuses(t *testing.T) {
	for _, c := range []struct{ name, conf, want string }{
		{"gcs", "type: GCS\nconfig:\n  bucket: blocks\n", "storage.googleapis.com"},
		{"unknown type", "type: FTP\nconfig: {}\n", `unknown type "FTP"`},
		{"no type", "config:\n  directory: /tmp\n", `unknown type ""`},
		{"unknown field", "type: FILESYSTEM\nconfig:\n  directory: /tmp\nregion: x\n", "field region not found"},
		{"provider's own check", "type: S3\nconfig:\n  bucket: blocks\n", "S3: "},
		{"provider's unknown field", "type: FILESYSTEM\nconfig:\n  dir: /tmp\n", "FILESYSTEM: "},
		{"not YAML", "type: [", "parse"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bkt, err := backfill.NewBucket([]byte(c.conf))
			if err == nil {
				bkt.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, backfill.ErrBucketConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q: want ErrBucketConfig and %q", err, c.want)
			}
		})
	}
}
