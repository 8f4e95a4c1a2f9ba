// Drive tus-js-client (Node) against a tus server for pytusd's interop tests.
//
// Usage: node driver.mjs '<json config>'   (or the JSON config on stdin)
//
// Config:
//   endpoint      creation URL, e.g. http://127.0.0.1:PORT/files/
//   file          path of the file to upload
//   source        'file' (fs.createReadStream(file), the default: random access, fingerprint from
//                 path/size/mtime), 'buffer' (the file read into a Buffer: fingerprint from its
//                 content) or 'stream' (a plain Readable of unknown size: needs chunkSize and
//                 uploadLengthDeferred, cannot resume)
//   chunkSize     bytes per PATCH (default: Infinity, one request)
//   metadata      {key: value}
//   options       passed to tus.Upload: parallelUploads, uploadDataDuringCreation,
//                 uploadLengthDeferred, overridePatchMethod, protocol ('tus-v1' | 'ietf-draft-03' |
//                 'ietf-draft-05'), retryDelays, storeFingerprintForResuming,
//                 removeFingerprintOnSuccess, uploadUrl, headers, ...
//   urlStorage    path of a JSON file for tus.FileUrlStorage (enables resuming across processes)
//   action        'upload' (to completion), 'upload-and-abort-after' (abort() once `abortAfter`
//                 bytes are accepted, without terminating), 'resume' (findPreviousUploads +
//                 resumeFromPreviousUpload, then to completion), 'abort-terminate' (abort(true)
//                 once `abortAfter` bytes are accepted: DELETE)
//   abortAfter    bytes (default 1: after the first accepted chunk)
//   timeoutMs     give up after this long (default 60000)
//   requestDelayMs  wait this long before each request (a slow client, for crash tests)
//   reportProgress  print {"event": "ack", "url", "offset"} on stderr for every offset the server
//                 acknowledged, as it happens
//
// Prints exactly one JSON line on stdout:
//   {ok, action, url, bytes, size, resumedFrom, previousUploads, partialUrls, terminated,
//    requests: [{method, url, status, offset, responseOffset, override, concat, uploadLength,
//                deferLength, contentType, interopVersion, uploadComplete}], error}
// and exits 0 when ok, 1 otherwise.

import * as fs from 'node:fs'
import { PassThrough } from 'node:stream'
import * as tus from 'tus-js-client'

async function readConfig() {
  if (process.argv[2]) return JSON.parse(process.argv[2])
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

/** A FileUrlStorage whose pending writes can be awaited before the process exits. */
class TrackedStorage {
  constructor(path) {
    this.inner = new tus.FileUrlStorage(path)
    this.pending = new Set()
  }

  _track(promise) {
    this.pending.add(promise)
    const done = () => this.pending.delete(promise)
    promise.then(done, done)
    return promise
  }

  findAllUploads() {
    return this._track(this.inner.findAllUploads())
  }

  findUploadsByFingerprint(fingerprint) {
    return this._track(this.inner.findUploadsByFingerprint(fingerprint))
  }

  removeUpload(key) {
    return this._track(this.inner.removeUpload(key))
  }

  addUpload(fingerprint, upload) {
    return this._track(this.inner.addUpload(fingerprint, upload))
  }

  async settle() {
    while (this.pending.size) await Promise.allSettled([...this.pending])
  }
}

function openInput(config) {
  const source = config.source || 'file'
  if (source === 'file') return fs.createReadStream(config.file)
  if (source === 'buffer') return fs.readFileSync(config.file)
  if (source === 'stream') {
    // Not an fs.ReadStream: tus-js-client sees a Readable of unknown size.
    const pass = new PassThrough({ highWaterMark: 64 * 1024 })
    fs.createReadStream(config.file).pipe(pass)
    return pass
  }
  throw new Error(`unknown source ${source}`)
}

function describeError(err) {
  if (!err) return null
  const out = { message: String(err.message || err) }
  const res = err.originalResponse
  if (res) {
    out.status = res.getStatus()
    out.body = res.getBody()
  }
  if (err.causingError) out.cause = String(err.causingError.message || err.causingError)
  return out
}

async function main() {
  const config = await readConfig()
  const action = config.action || 'upload'
  const result = {
    ok: false,
    action,
    url: null,
    bytes: 0,
    size: null,
    resumedFrom: null,
    previousUploads: null,
    partialUrls: null,
    terminated: null,
    requests: [],
    error: null,
  }
  const storage = config.urlStorage ? new TrackedStorage(config.urlStorage) : null

  let finish
  const finished = new Promise((resolve) => {
    finish = resolve
  })
  const timer = setTimeout(() => {
    result.error = { message: `driver timeout after ${config.timeoutMs || 60000} ms` }
    finish()
  }, config.timeoutMs || 60000)

  const abortAfter = config.abortAfter ?? 1
  let aborting = false
  let upload

  const options = {
    endpoint: config.endpoint,
    metadata: config.metadata || {},
    retryDelays: null,
    ...(config.chunkSize ? { chunkSize: config.chunkSize } : {}),
    ...(config.options || {}),
    onBeforeRequest: async (req) => {
      if (config.requestDelayMs) await new Promise((resolve) => setTimeout(resolve, config.requestDelayMs))
      req._interopIndex = result.requests.length
      result.requests.push({
        method: req.getMethod(),
        url: req.getURL(),
        status: null,
        offset: req.getHeader('Upload-Offset') ?? null,
        override: req.getHeader('X-HTTP-Method-Override') ?? null,
        concat: req.getHeader('Upload-Concat') ?? null,
        uploadLength: req.getHeader('Upload-Length') ?? null,
        deferLength: req.getHeader('Upload-Defer-Length') ?? null,
        contentType: req.getHeader('Content-Type') ?? null,
        interopVersion: req.getHeader('Upload-Draft-Interop-Version') ?? null,
        uploadComplete: req.getHeader('Upload-Complete') ?? null,
      })
    },
    onAfterResponse: (req, res) => {
      const entry = result.requests[req._interopIndex]
      if (entry) {
        entry.status = res.getStatus()
        entry.responseOffset = res.getHeader('Upload-Offset') ?? null
      }
      const acked = res.getHeader('Upload-Offset')
      if (config.reportProgress && acked != null && res.getStatus() < 300) {
        const url = req.getMethod() === 'POST' ? res.getHeader('Location') : req.getURL()
        process.stderr.write(`${JSON.stringify({ event: 'ack', method: req.getMethod(), url, offset: Number(acked) })}\n`)
      }
      if (req.getMethod() === 'HEAD' && result.resumedFrom === null && action === 'resume') {
        const offset = Number.parseInt(res.getHeader('Upload-Offset'), 10)
        if (!Number.isNaN(offset)) result.resumedFrom = offset
      }
    },
    onProgress: () => {},
    onChunkComplete: (_chunkSize, bytesAccepted) => {
      if (!upload?._parallelUploads) result.bytes = bytesAccepted
      if (aborting || bytesAccepted < abortAfter) return
      if (action === 'upload-and-abort-after') {
        aborting = true
        result.url = upload.url
        upload.abort(false).then(() => {
          result.ok = true
          finish()
        })
      } else if (action === 'abort-terminate') {
        aborting = true
        result.url = upload.url
        upload.abort(true).then(
          () => {
            result.ok = true
            result.terminated = true
            finish()
          },
          (err) => {
            result.terminated = false
            result.error = describeError(err)
            finish()
          },
        )
      }
    },
    onSuccess: () => {
      result.ok = action === 'upload' || action === 'resume'
      if (!result.ok) result.error = { message: `upload finished before ${action} could act` }
      result.url = upload.url
      finish()
    },
    onError: (err) => {
      result.url = upload.url
      result.error = describeError(err)
      finish()
    },
  }
  if (storage) options.urlStorage = storage

  const input = openInput(config)
  upload = new tus.Upload(input, options)

  if (action === 'resume') {
    const previous = await upload.findPreviousUploads()
    result.previousUploads = previous.length
    if (previous.length) {
      // The newest entry first, as applications usually do.
      previous.sort((a, b) => new Date(b.creationTime) - new Date(a.creationTime))
      upload.resumeFromPreviousUpload(previous[0])
    }
  }
  upload.start()

  await finished
  clearTimeout(timer)
  if (storage) await storage.settle()
  if (upload._parallelUploadUrls) result.partialUrls = [...upload._parallelUploadUrls]
  if (upload._size != null) result.size = upload._size
  if (upload._parallelUploads && result.ok) result.bytes = upload._size
  return result
}

function emit(result, code) {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code))
}

main().then(
  (result) => emit(result, result.ok ? 0 : 1),
  (err) => emit({ ok: false, error: { message: String(err?.stack || err) } }, 2),
)
