// A third-party reflection client (npm's grpc-js-reflection-client over @grpc/grpc-js) against a
// running host, with no .proto at hand: lists the services, describes the Echo service's methods,
// and calls Echo with the descriptors it obtained through reflection. Prints one JSON object.
// Usage: node reflection_client.js <host:port> <v1|v1alpha>
'use strict';
const grpc = require('@grpc/grpc-js');
const { GrpcReflection } = require('grpc-js-reflection-client');

async function main() {
  const [address, version] = process.argv.slice(2);
  const credentials = grpc.ChannelCredentials.createInsecure();
  const reflection = new GrpcReflection(address, credentials, {}, version);
  const services = await reflection.listServices();
  const methods = await reflection.listMethods('gameverse.echo.v1.Echo');
  const descriptor = await reflection.getDescriptorBySymbol('gameverse.echo.v1.Echo');
  const packageObject = descriptor.getPackageObject({ keepCase: true, longs: String, enums: String });
  const echo = new packageObject.gameverse.echo.v1.Echo(address, credentials);
  const reply = await new Promise((resolve, reject) => {
    echo.Echo({ payload: Buffer.from('through reflection') }, (error, answer) =>
      error ? reject(error) : resolve(answer));
  });
  echo.close();
  const extension = await reflection.getDescriptorBySymbol('no.such.Symbol').then(
    () => 'found', (error) => String(error && error.message ? error.message : error));
  console.log(JSON.stringify({
    services,
    methods: methods.map((method) => ({
      name: method.name,
      request: method.definition.requestType.type.name,
      response: method.definition.responseType.type.name,
      serverStreaming: method.definition.responseStream,
    })),
    echo: Buffer.from(reply.payload).toString(),
    missing: extension,
  }));
}

main().then(() => process.exit(0), (error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
