// Sends one batch of sealed records as one tus PATCH (docs/API.md), and is then ended by the page.
// The batch's buffers (WebCrypto's outputs, handed over by the page) die with this worker instead
// of piling up in the page until V8 collects them (docs/BROWSER.md section 6).
self.onmessage = async ({ data: { url, headers, parts, skip } }) => {
  try {
    const answer = await fetch(url, { method: 'PATCH', headers, body: new Blob(parts).slice(skip) });
    const text = answer.status === 204 ? '' : (await answer.text()).slice(0, 200);
    postMessage({ status: answer.status, offset: answer.headers.get('Upload-Offset'), text });
  } catch (error) {
    postMessage({ error: error.message });
  }
};
