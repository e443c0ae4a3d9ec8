package backfill

import (
	"fmt"
	"strings"

	kitlog "github.com/go-kit/log"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/azure"
	"github.com/thanos-io/objstore/providers/bos"
	"github.com/thanos-io/objstore/providers/cos"
	"github.com/thanos-io/objstore/providers/filesystem"
	"github.com/thanos-io/objstore/providers/obs"
	"github.com/thanos-io/objstore/providers/oci"
	"github.com/thanos-io/objstore/providers/oss"
	"github.com/thanos-io/objstore/providers/s3"
	"github.com/thanos-io/objstore/providers/swift"
	"gopkg.in/yaml.v2"
)

// bucketConfig is the objstore YAML Thanos components take with --objstore.config-file, parsed
// as Thanos' objstore/client parses it (yaml.v2, strict).
type bucketConfig struct {
	Type   string `yaml:"type"`
	Config any    `yaml:"config"`
	Prefix string `yaml:"prefix"`
}

// component names the client in the providers' user agents.
const component = "collector-backfill"

// providers are the bucket types NewBucket opens: those of Thanos' objstore/client except GCS.
// The GCS provider links Google's storage client with gRPC, its xDS resolver and OpenTelemetry:
// 30 MB of binary and 16 MiB of resident memory in every process, for a bucket that is used a
// few times an hour at most. GCS is reachable through its S3-compatible XML API instead (type
// S3, endpoint storage.googleapis.com, an HMAC key), which the S3 provider's client (minio-go)
// supports.
var providers = map[string]func(conf []byte) (objstore.Bucket, error){
	string(objstore.S3): func(c []byte) (objstore.Bucket, error) {
		return s3.NewBucket(kitlog.NewNopLogger(), c, component, nil)
	},
	string(objstore.AZURE): func(c []byte) (objstore.Bucket, error) {
		return azure.NewBucket(kitlog.NewNopLogger(), c, component, nil)
	},
	string(objstore.SWIFT): func(c []byte) (objstore.Bucket, error) {
		return swift.NewContainer(kitlog.NewNopLogger(), c, nil)
	},
	string(objstore.COS): func(c []byte) (objstore.Bucket, error) {
		return cos.NewBucket(kitlog.NewNopLogger(), c, component, nil)
	},
	string(objstore.ALIYUNOSS): func(c []byte) (objstore.Bucket, error) {
		return oss.NewBucket(kitlog.NewNopLogger(), c, component, nil)
	},
	string(objstore.FILESYSTEM): func(c []byte) (objstore.Bucket, error) {
		return filesystem.NewBucketFromConfig(c)
	},
	string(objstore.BOS): func(c []byte) (objstore.Bucket, error) {
		return bos.NewBucket(kitlog.NewNopLogger(), c, component)
	},
	string(objstore.OCI): func(c []byte) (objstore.Bucket, error) {
		return oci.NewBucket(kitlog.NewNopLogger(), c, nil)
	},
	string(objstore.OBS): func(c []byte) (objstore.Bucket, error) {
		return obs.NewBucket(kitlog.NewNopLogger(), c)
	},
}

// errGCS says what to do with a GCS configuration.
var errGCS = fmt.Errorf("type GCS is not built in: use GCS's S3-compatible API (type: S3, endpoint: storage.googleapis.com, an HMAC key as access_key and secret_key)")

// NewBucket opens the bucket described by conf, the objstore YAML that Thanos components take
// with --objstore.config-file: type FILESYSTEM, S3, AZURE, SWIFT, COS, ALIYUNOSS, BOS, OCI or OBS
// (any case), its config, and an optional prefix. GCS is refused with the way to reach it over S3
// (see providers).
func NewBucket(conf []byte) (objstore.Bucket, error) {
	var bc bucketConfig
	if err := yaml.UnmarshalStrict(conf, &bc); err != nil {
		return nil, fmt.Errorf("%w: parse: %w", ErrBucketConfig, err)
	}
	typ := strings.ToUpper(bc.Type)
	if typ == string(objstore.GCS) {
		return nil, fmt.Errorf("%w: %w", ErrBucketConfig, errGCS)
	}
	open, ok := providers[typ]
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q (one of FILESYSTEM, S3, AZURE, SWIFT, COS, ALIYUNOSS, BOS, OCI, OBS)", ErrBucketConfig, bc.Type)
	}
	c, err := yaml.Marshal(bc.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: config of type %s: %w", ErrBucketConfig, typ, err)
	}
	bkt, err := open(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBucketConfig, typ, err)
	}
	return objstore.NewPrefixedBucket(bkt, bc.Prefix), nil
}
