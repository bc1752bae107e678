// The Service Worker of downloads streamed to the browser's own downloads (docs/BROWSER.md section
// 3), for browsers without the origin-private file system. The page hands it a MessagePort to a
// download worker and opens `save/<id>` under this worker's scope in a hidden frame; the answer is
// a stream the browser saves as a file, fed by the worker one verified chunk per pull. It never sees
// a key, only plaintext the worker already verified; an error from the worker fails the response,
// so the browser does not keep the file as complete.
const streams = new Map();

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('message', (event) => {
  // `{keepAlive: true}` needs no answer: the event alone keeps this worker running.
  const { id, name } = event.data ?? {};
  const [port, reply] = event.ports;
  if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id) || typeof name !== 'string' || !port || !reply) return;
  streams.set(id, { name, port });
  // The page opens save/<id> only after this: a fetch can reach a worker before a message sent earlier.
  reply.postMessage('ready');
  // Never asked for (the frame did not load): forgotten after a minute.
  setTimeout(() => { if (streams.get(id)?.port === port) streams.delete(id); }, 60_000);
});

self.addEventListener('fetch', (event) => {
  const match = new URL(event.request.url).pathname.match(/\/save\/([0-9a-f]{32})$/);
  if (!match) return;
  const entry = streams.get(match[1]);
  streams.delete(match[1]);
  if (!entry) {
    event.respondWith(new Response('no such download; start it again from the page', { status: 404 }));
    return;
  }
  let wake = null;
  // Chunks handed to the browser, oldest first. The browser asks for the next chunk (pull) only
  // once it has taken in the one before, so a chunk two pulls old is surely done with: its buffer
  // goes back to the download worker to be reused, and no buffer per chunk is left here as garbage.
  const given = [];
  const body = new ReadableStream({
    start(controller) {
      entry.port.onmessage = ({ data }) => {
        if (data.chunk) {
          given.push(data.chunk);
          controller.enqueue(new Uint8Array(data.chunk, 0, data.length));
        } else if (data.done) controller.close();
        else controller.error(new Error(data.error));
        wake?.();
        wake = null;
      };
    },
    pull() {
      if (given.length > 2) {
        const back = given.shift();
        entry.port.postMessage({ back }, [back]);
      }
      return new Promise((resolve) => { wake = resolve; entry.port.postMessage('pull'); });
    },
    cancel() { entry.port.postMessage('cancel'); },
  }, { highWaterMark: 0 });
  event.respondWith(new Response(body, {
    headers: {
      'Content-Type': 'application/octet-stream',
      'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent(entry.name)}`,
      'X-Content-Type-Options': 'nosniff',
    },
  }));
});
