// Loads a page into headless Chromium (Debian's, driven by playwright-core) that calls the host's
// gRPC-Web gateway from another origin with Connect's gRPC-Web transport, as a browser build of a
// game would: the browser makes the CORS preflight and enforces the answer.
// Usage: node browser_client.mjs <gateway base URL> <descriptor set> <token> <page port> <page host>
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [baseUrl, descriptorSet, token, pagePort, pageHost] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const modules = {
  "@bufbuild/protobuf": "@bufbuild/protobuf/dist/esm/index.js",
  "@bufbuild/protobuf/wire": "@bufbuild/protobuf/dist/esm/wire/index.js",
  "@bufbuild/protobuf/wkt": "@bufbuild/protobuf/dist/esm/wkt/index.js",
  "@bufbuild/protobuf/reflect": "@bufbuild/protobuf/dist/esm/reflect/index.js",
  "@bufbuild/protobuf/codegenv2": "@bufbuild/protobuf/dist/esm/codegenv2/index.js",
  "@connectrpc/connect": "@connectrpc/connect/dist/esm/index.js",
  "@connectrpc/connect/protocol": "@connectrpc/connect/dist/esm/protocol/index.js",
  "@connectrpc/connect/protocol-connect": "@connectrpc/connect/dist/esm/protocol-connect/index.js",
  "@connectrpc/connect/protocol-grpc-web": "@connectrpc/connect/dist/esm/protocol-grpc-web/index.js",
  "@connectrpc/connect-web": "@connectrpc/connect-web/dist/esm/index.js",
};
const imports = Object.fromEntries(Object.entries(modules).map(([name, path]) => [name, `/node_modules/${path}`]));
const page = `<!doctype html><meta charset="utf-8"><title>gameverse</title>
<script type="importmap">${JSON.stringify({ imports })}</script>
<script type="module">
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
const result = {};
try {
  const set = new Uint8Array(await (await fetch("/descriptor_set.pb")).arrayBuffer());
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, set));
  const echo = createClient(registry.getService("gameverse.echo.v1.Echo"),
                            createGrpcWebTransport({ baseUrl: ${JSON.stringify(baseUrl)} }));
  const reply = await echo.echo({ payload: new TextEncoder().encode("from the page") },
                                { onHeader: (h) => { result.requestId = h.get("x-request-id"); } });
  result.echo = new TextDecoder().decode(reply.payload);
  result.expand = [];
  for await (const item of echo.expand({ payload: new Uint8Array([120]), count: 2 })) result.expand.push(Number(item.sequence));
  const me = await echo.whoAmI({}, { headers: { authorization: "Bearer ${token}" } });
  result.user = me.userId;
} catch (e) {
  result.error = ConnectError.from(e).code ? Code[ConnectError.from(e).code] : String(e);
  result.errorMessage = String(e);
}
document.title = "done";
document.body.textContent = JSON.stringify(result);
</script>`;

const server = createServer((request, response) => {
  const path = new URL(request.url, "http://x").pathname;
  try {
    if (path === "/") {
      response.writeHead(200, { "content-type": "text/html" }).end(page);
    } else if (path === "/descriptor_set.pb") {
      response.writeHead(200, { "content-type": "application/octet-stream" }).end(readFileSync(descriptorSet));
    } else if (path.startsWith("/node_modules/") && !normalize(path).includes("..")) {
      response.writeHead(200, { "content-type": "text/javascript" }).end(readFileSync(join(here, normalize(path))));
    } else {
      response.writeHead(404).end();
    }
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(Number(pagePort), pageHost, resolve));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const tab = await browser.newPage();
  const messages = [];
  tab.on("console", (m) => messages.push(m.text()));
  await tab.goto(`http://${pageHost}:${pagePort}/`);
  await tab.waitForFunction(() => document.title === "done", null, { timeout: 30000 });
  const result = JSON.parse(await tab.textContent("body"));
  result.console = messages;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
