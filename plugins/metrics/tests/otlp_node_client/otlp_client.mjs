// OpenTelemetry's Node.js metrics SDK exporting over OTLP/gRPC to the host:
//   node otlp_client.mjs <host:port> <metric name prefix> <bearer token with the telemetry role>
// Records a counter (two rounds, cumulative), a gauge and a histogram, exports after each round,
// and exits non-zero when an export fails.
import { Metadata } from '@grpc/grpc-js';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';

const [address, prefix, token] = process.argv.slice(2);
const metadata = new Metadata();
metadata.set('authorization', `Bearer ${token}`);
const exporter = new OTLPMetricExporter({ url: `http://${address}`, metadata });
const results = [];
const recording = {
  export(metrics, done) {
    exporter.export(metrics, (result) => {
      results.push(result);
      done(result);
    });
  },
  forceFlush: () => exporter.forceFlush(),
  shutdown: () => exporter.shutdown(),
  selectAggregationTemporality: (kind) => exporter.selectAggregationTemporality(kind),
  selectAggregation: (kind) => exporter.selectAggregation(kind),
};
const reader = new PeriodicExportingMetricReader({ exporter: recording, exportIntervalMillis: 3600000 });
const provider = new MeterProvider({
  resource: resourceFromAttributes({ 'service.name': 'otlp-node-test' }),
  readers: [reader],
});
const meter = provider.getMeter('gameverse-test');

const orders = meter.createCounter(`${prefix}_orders`);
const depth = meter.createGauge(`${prefix}_queue_depth`);
const duration = meter.createHistogram(`${prefix}_match_seconds`, {
  advice: { explicitBucketBoundaries: [1, 10, 100] },
});
orders.add(3, { mode: 'duel' });
orders.add(4, { mode: 'team' });
depth.record(17);
for (const v of [5, 50, 50]) duration.record(v);
await reader.forceFlush();
orders.add(2, { mode: 'duel' });  // cumulative 5: a delta of 2
await reader.forceFlush();
await provider.shutdown();

const failed = results.filter((r) => r.code !== 0);
console.log(JSON.stringify({ exports: results.length, failed: failed.map((r) => String(r.error)) }));
process.exit(results.length >= 2 && failed.length === 0 ? 0 : 1);
