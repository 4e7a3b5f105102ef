package global

import "github.com/prometheus/client_golang/prometheus"

// metrics describe clones from the network.
type metrics struct {
	inProgress    prometheus.Gauge
	duration      *prometheus.HistogramVec
	fetchedBytes  prometheus.Counter
	blobsInFlight prometheus.Gauge
	failures      *prometheus.CounterVec
	published     prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "disco", Name: "clones_in_progress",
			Help: "Repositories being cloned from IPFS by CID.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "disco", Name: "clone_duration_seconds",
			Help:    "Time to clone a repository by CID, up to its manifests; by result.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"result"}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "disco", Name: "clone_fetched_bytes_total",
			Help: "Bytes of blobs fetched from IPFS and verified against their digests.",
		}),
		blobsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "disco", Name: "clone_blob_fetches_in_progress",
			Help: "Blobs being fetched from IPFS.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "disco", Name: "clone_failures_total",
			Help: "Failed clones and blob fetches, by reason.",
		}, []string{"reason"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "disco", Name: "published_total",
			Help: "Manifests filed under their digest and CID after a push.",
		}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.inProgress, m.duration, m.fetchedBytes, m.blobsInFlight, m.failures, m.published} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
