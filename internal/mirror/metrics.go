package mirror

import "github.com/prometheus/client_golang/prometheus"

// Where a mirror got content from.
const (
	sourceUpstream = "upstream"
	sourcePeer     = "peer"
)

// metrics count what the mirror fetched, and from where.
type metrics struct {
	fetches   *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	published prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "disco", Name: "mirror_fetches_total",
			Help: "Manifests and blobs a mirror fetched, by source (upstream or peer) and kind.",
		}, []string{"source", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "disco", Name: "mirror_fetched_bytes_total",
			Help: "Bytes of manifests and blobs a mirror fetched, by source.",
		}, []string{"source"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "disco", Name: "mirror_published_total",
			Help: "Mirrored manifests filed under their digest and CID.",
		}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.fetches, m.bytes, m.published} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) fetched(source string, k kind, size int64) {
	m.fetches.WithLabelValues(source, k.String()).Inc()
	if size > 0 {
		m.bytes.WithLabelValues(source).Add(float64(size))
	}
}
