/// SealedStream: the sealed-stream format and the pipeline that produces and consumes it.
///
/// A file is cut into chunks; each chunk is LZ4-compressed when that shrinks it and encrypted with
/// AES-256-GCM under a per-stream key derived (HKDF-SHA256) from the session key and a random salt.
/// Start with ``Sealer`` and ``Opener`` (streaming, parallel, back-pressured), ``ChunkOpener``
/// (one chunk, random access) and ``IncrementalOpener`` (records opened as bytes arrive). The
/// keyless layouts and checks live in SealedFormat, re-exported here. Every primitive comes from
/// OpenSSL 3 (see `OpenSSL.swift`), compression from liblz4.
@_exported import SealedFormat
