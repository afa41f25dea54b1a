// An OTLP/HTTP trace receiver for tests: POST /v1/traces in http/protobuf or http/json,
// decoded into plain spans (hex ids, flat attributes). Used in-process by unit tests, and run
// as a program inside a simulated namespace by the sim tests, where it prints one JSON line
// per span: `node otlp-receiver.ts HOST PORT`.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  readonly kind: number;
  readonly attributes: Record<string, string | number | boolean>;
  readonly resource: Record<string, string | number | boolean>;
  readonly status: number;
  /** How it arrived. */
  readonly encoding: 'protobuf' | 'json';
}

// The parts of opentelemetry/proto/collector/trace/v1 the receiver reads, as a protobufjs descriptor.
const SCHEMA = {
  nested: {
    AnyValue: { oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue'] } }, fields: {
      stringValue: { type: 'string', id: 1 }, boolValue: { type: 'bool', id: 2 }, intValue: { type: 'int64', id: 3 }, doubleValue: { type: 'double', id: 4 },
    } },
    KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } } },
    Resource: { fields: { attributes: { rule: 'repeated', type: 'KeyValue', id: 1 } } },
    Status: { fields: { message: { type: 'string', id: 2 }, code: { type: 'int32', id: 3 } } },
    Span: { fields: {
      traceId: { type: 'bytes', id: 1 }, spanId: { type: 'bytes', id: 2 }, traceState: { type: 'string', id: 3 }, parentSpanId: { type: 'bytes', id: 4 },
      name: { type: 'string', id: 5 }, kind: { type: 'int32', id: 6 }, attributes: { rule: 'repeated', type: 'KeyValue', id: 9 }, status: { type: 'Status', id: 15 },
    } },
    ScopeSpans: { fields: { spans: { rule: 'repeated', type: 'Span', id: 2 } } },
    ResourceSpans: { fields: { resource: { type: 'Resource', id: 1 }, scopeSpans: { rule: 'repeated', type: 'ScopeSpans', id: 2 } } },
    ExportTraceServiceRequest: { fields: { resourceSpans: { rule: 'repeated', type: 'ResourceSpans', id: 1 } } },
  },
};
const Request = protobuf.Root.fromJSON(SCHEMA).lookupType('ExportTraceServiceRequest');

interface Kv { key: string; value?: { stringValue?: string; boolValue?: boolean; intValue?: string | number; doubleValue?: number } }
interface WireSpan { traceId?: string; spanId?: string; parentSpanId?: string; name?: string; kind?: number; attributes?: Kv[]; status?: { code?: number } }
interface WireRequest { resourceSpans?: { resource?: { attributes?: Kv[] }; scopeSpans?: { spans?: WireSpan[] }[] }[] }

function flat(kvs: readonly Kv[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of kvs ?? []) {
    const v = kv.value ?? {};
    const value = v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue);
    if (value !== undefined) out[kv.key] = value;
  }
  return out;
}

/** Spans of one export request (ids as lowercase hex). */
export function decodeRequest(body: Buffer, contentType: string): ReceivedSpan[] {
  const json = contentType.includes('json');
  const req: WireRequest = json
    ? JSON.parse(body.toString()) as WireRequest
    : Request.toObject(Request.decode(body), { bytes: String, longs: String, defaults: false });
  // OTLP/JSON carries ids as hex; protobufjs gives bytes as base64.
  const hex = (v: string | undefined): string => (v === undefined ? '' : json ? v.toLowerCase() : Buffer.from(v, 'base64').toString('hex'));
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = flat(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), name: s.name ?? '', kind: s.kind ?? 0,
          attributes: flat(s.attributes), resource, status: s.status?.code ?? 0, encoding: json ? 'json' : 'protobuf',
        });
      }
    }
  }
  return out;
}

export interface OtlpReceiver {
  readonly port: number;
  readonly spans: ReceivedSpan[];
  /** Requests answered, by content type. */
  readonly requests: string[];
  waitFor(match: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs: number, what: string): Promise<void>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(host: string, port: number, onSpan?: (s: ReceivedSpan) => void): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('end', () => {
      const type = req.headers['content-type'] ?? '';
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      try {
        const got = decodeRequest(Buffer.concat(chunks), type);
        requests.push(type);
        for (const s of got) {
          spans.push(s);
          onSpan?.(s);
        }
        res.writeHead(200, { 'content-type': type.includes('json') ? 'application/json' : 'application/x-protobuf' });
        res.end(type.includes('json') ? '{}' : Buffer.alloc(0));
      } catch (err: unknown) {
        res.writeHead(400).end(String(err));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen({ host, port }, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    spans,
    requests,
    waitFor: async (match, timeoutMs, what) => {
      const deadline = Date.now() + timeoutMs;
      while (!match(spans)) {
        if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; spans: ${JSON.stringify(spans).slice(0, 3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

if (import.meta.main) {
  const [host, port] = process.argv.slice(2);
  const r = await startOtlpReceiver(host ?? '127.0.0.1', Number(port ?? 4318), (s) => process.stdout.write(`${JSON.stringify(s)}\n`));
  process.stdout.write(`${JSON.stringify({ listening: r.port })}\n`);
  process.on('SIGTERM', () => void r.close().then(() => process.exit(0)));
}
