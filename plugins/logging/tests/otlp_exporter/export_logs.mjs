// Ships log records to a GameVerse host with OpenTelemetry's Node.js logs SDK and its OTLP/gRPC
// exporter, configured as any service would be: no GameVerse code.
// Usage: node export_logs.mjs <host:port> <bearer token> <service.name> <records>
import { Metadata } from '@grpc/grpc-js';
import { diag, DiagConsoleLogger, DiagLogLevel } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';

const [target, token, service, countText] = process.argv.slice(2);
const count = Number(countText);
diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);

const metadata = new Metadata();
metadata.set('authorization', `Bearer ${token}`);
const exporter = new OTLPLogExporter({ url: `http://${target}`, metadata });
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'service.name': service, 'host.name': 'node-exporter' }),
  processors: [new BatchLogRecordProcessor({ exporter, maxExportBatchSize: 100, scheduledDelayMillis: 50 })],
});
const logger = provider.getLogger('otlp-exporter-test', '1.0.0');
for (let i = 0; i < count; ++i) {
  const warn = i % 2 === 1;
  logger.emit({
    severityNumber: warn ? SeverityNumber.WARN : SeverityNumber.INFO,
    severityText: warn ? 'WARN' : 'INFO',
    body: `otel line ${i}`,
    attributes: { 'line.number': i, 'player.name': 'ada', 'match.ok': !warn },
  });
}
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ exported: count }));
