package store

import "github.com/prometheus/client_golang/prometheus"

// Collector exports Metrics to prometheus: one pebble Metrics call per
// scrape, nothing on the apply path.
func (s *Store) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Store }

type storeMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*StoreMetrics) float64
}

var storeMetrics = []storeMetric{
	{prometheus.NewDesc("switchd_store_applied_index", "Raft index of the last entry applied to the ledger.", nil, nil),
		prometheus.GaugeValue, func(m *StoreMetrics) float64 { return float64(m.AppliedIndex) }},
	{prometheus.NewDesc("switchd_store_entries_applied_total", "Raft entries applied since start.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.Entries) }},
	{prometheus.NewDesc("switchd_store_commands_applied_total", "Ledger commands applied since start.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.Commands) }},
	{prometheus.NewDesc("switchd_store_corrupt_entries_total", "Raft entries that did not decode.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.CorruptEntries) }},
	{prometheus.NewDesc("switchd_store_snapshot_restores_total", "Snapshot streams from a leader restored into the ledger.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.Restores) }},
	{prometheus.NewDesc("switchd_store_state_streams_total", "Full state streams opened for followers that needed a snapshot.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.StateStreams) }},
	{prometheus.NewDesc("switchd_store_state_stream_bytes_total", "Bytes sent in state streams.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.StateStreamBytes) }},
	{prometheus.NewDesc("switchd_store_write_failed", "1 once a ledger write failed: the store applies nothing more until the node restarts.", nil, nil),
		prometheus.GaugeValue, func(m *StoreMetrics) float64 { return float64(m.WriteFailed) }},
	{prometheus.NewDesc("switchd_store_disk_bytes", "Pebble's on-disk size.", nil, nil),
		prometheus.GaugeValue, func(m *StoreMetrics) float64 { return float64(m.DiskBytes) }},
	{prometheus.NewDesc("switchd_store_l0_files", "Sstables in pebble's L0 (write stalls follow when this grows).", nil, nil),
		prometheus.GaugeValue, func(m *StoreMetrics) float64 { return float64(m.L0Files) }},
	{prometheus.NewDesc("switchd_store_compaction_debt_bytes", "Pebble's estimate of bytes compactions are behind.", nil, nil),
		prometheus.GaugeValue, func(m *StoreMetrics) float64 { return float64(m.CompactionDebtBytes) }},
	{prometheus.NewDesc("switchd_store_block_cache_hits_total", "Pebble block cache hits.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.BlockCacheHits) }},
	{prometheus.NewDesc("switchd_store_block_cache_misses_total", "Pebble block cache misses.", nil, nil),
		prometheus.CounterValue, func(m *StoreMetrics) float64 { return float64(m.BlockCacheMisses) }},
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range storeMetrics {
		ch <- m.desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.Metrics()
	for _, sm := range storeMetrics {
		ch <- prometheus.MustNewConstMetric(sm.desc, sm.kind, sm.value(&m))
	}
}
