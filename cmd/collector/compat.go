package main

// What lets collector take the place of the seeds (RHACM's metrics-collector and
// telemeter-client) with their command lines unchanged: the seed's CSV parsing of --label,
// --rename and --anonymize-labels, `run` implied when no command is given, the cluster ID taken
// from --label clusterID=..., and telemeter-client's flags. docs/seed-differences.md lists what
// collector deliberately does differently.

import (
	"encoding/csv"
	"errors"
	"path/filepath"
	"strings"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/urfave/cli/v2"
)

// seedNames are the seeds' binary names: invoked under one of them (a symlink, or an image that
// installs collector as /usr/bin/metrics-collector), collector runs `run` with the arguments.
var seedNames = map[string]bool{"metrics-collector": true, "telemeter-client": true}

// impliedRun returns args with the command `run` inserted when none is given, as the seeds take
// their flags without a command: under a seed's name unless the first argument is a command, and
// under any name when the first argument is a flag other than --help and --version. Any other
// command line is returned unchanged.
func impliedRun(args []string, commands []string) []string {
	if len(args) == 0 {
		return args
	}
	first := ""
	if len(args) > 1 {
		first = args[1]
	}
	for _, c := range commands {
		if first == c {
			return args
		}
	}
	asSeed := seedNames[strings.TrimSuffix(filepath.Base(args[0]), ".exe")]
	switch {
	case asSeed:
	case strings.HasPrefix(first, "-") && first != "-" && first != "--":
		name := strings.SplitN(strings.TrimLeft(first, "-"), "=", 2)[0]
		if name == "h" || name == "help" || name == "v" || name == "version" {
			return args
		}
	default:
		return args
	}
	out := make([]string, 0, len(args)+1)
	out = append(out, args[0], "run")
	return append(out, args[1:]...)
}

// csvValues parses the values of a CSV flag as the seed's pflag StringSlice does: each value is
// one CSV record, so `"cluster=a"` is cluster=a (the quotes RHACM's operator writes reach the
// process, as container arguments go through no shell) and `"a=b,c",d=e` is two values. Parts are
// trimmed and empty ones dropped. A value that is not valid CSV (a quote inside an unquoted part)
// is a usage error naming the flag.
func csvValues(flag string, vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		if strings.TrimSpace(v) == "" {
			continue
		}
		r := csv.NewReader(strings.NewReader(v))
		r.TrimLeadingSpace = true
		rec, err := r.Read()
		if err != nil {
			return nil, usagef("--%s %q: not a comma-separated list: %v", flag, v, csvErr(err))
		}
		for _, p := range rec {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// csvErr drops the position encoding/csv puts before its message ("parse error on line 1,
// column 3: "), meaningless for a flag value.
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// clusterIDLabel is the label the seed's operator passes the cluster ID in.
const clusterIDLabel = "clusterID"

// flagClusterID returns the cluster ID of the flags' source: --id, or else the value of
// --label clusterID=..., as RHACM's operator passes it (metrics-collector has no --id). Empty
// when neither is set.
func flagClusterID(c flagGetter) (string, error) {
	if id := c.String("id"); id != "" {
		return id, nil
	}
	kvs, err := csvValues("label", c.StringSlice("label"))
	if err != nil {
		return "", err
	}
	id := ""
	for _, kv := range kvs {
		lp, err := ingest.ParseLabelPair(kv)
		if err == nil && lp.Name == clusterIDLabel {
			id = lp.Value // the last one wins, as for the labels themselves
		}
	}
	return id, nil
}

// seedEnv is env(name) followed by the seed's variable (FROM, FROM_QUERY, TO: RHACM's deployment
// sets them): the first one set wins, so COLLECTOR_FROM overrides FROM.
func seedEnv(name, seedVar string) []string { return append(env(name), seedVar) }

// seedEnvSlice is seedEnv for a repeatable flag.
func seedEnvSlice(f *cli.StringSliceFlag, seedVar string) *cli.StringSliceFlag {
	f.EnvVars = append(f.EnvVars, seedVar)
	return f
}

// telemeterFlags are telemeter-client's upload flags, which name the Telemeter protocol: a token
// exchanged at <to>/authorize for a JWT, then MetricFamily protobufs posted to <to>/upload.
// collector speaks remote-write only; each flag is refused with what to use instead, rather than
// ignored (the data would go nowhere) or reinterpreted (the pull secret would reach another
// endpoint as a bearer token).
var telemeterFlags = []struct{ name, instead string }{
	{"to", "give the remote-write URL with --to-upload"},
	{"to-auth", "give the remote-write URL with --to-upload"},
	{"to-token", "a bearer token for the remote-write endpoint goes in --to-upload-token-file"},
	{"to-token-file", "a bearer token for the remote-write endpoint goes in --to-upload-token-file"},
}

// refuseTelemeterFlags returns a usage error for the first of telemeter-client's upload flags
// that is set.
func refuseTelemeterFlags(c flagGetter) error {
	for _, f := range telemeterFlags {
		if c.IsSet(f.name) {
			return usagef("--%s: the Telemeter protocol (a token exchanged at /authorize, then /upload) is not supported, collector sends Prometheus remote-write: %s", f.name, f.instead)
		}
	}
	return nil
}
