import AsyncHTTPClient
import Foundation
import NIOCore
import SealedFormat
import SealedStream
import Testing
import SafeChatTestSupport

/// A 4 GiB sealed stream through a gateway on S3 (SeaweedFS), uploaded with tus as it is sealed and
/// downloaded back: byte-identical, and the gateway's peak memory stays bounded whatever the size.
/// Its own `swift test --filter S3LargeFileTests` run in .ci/run, so that nothing else shares the
/// machine while it runs.
@Suite struct S3LargeFileTests {
    /// Incompressible plaintext made on the fly: a random mebibyte, stamped with each chunk's offset.
    struct RandomSource: ByteSource {
        let total: Int64
        var produced: Int64 = 0
        static let block: [UInt8] = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }

        mutating func read(exactly count: Int) async throws -> ByteChunk {
            let n = Int(min(Int64(count), total - produced))
            guard n > 0 else { return .empty }
            var out = [UInt8](unsafeUninitializedCapacity: n) { buffer, filled in
                var at = 0
                while at < n {
                    let offset = Int((produced + Int64(at)) & ((1 << 20) - 1))
                    let take = min(n - at, Self.block.count - offset)
                    Self.block.withUnsafeBufferPointer { (buffer.baseAddress! + at).update(from: $0.baseAddress! + offset, count: take) }
                    at += take
                }
                filled = n
            }
            withUnsafeBytes(of: produced.littleEndian) { stamp in for i in 0..<min(8, out.count) { out[i] ^= stamp[i] } }
            produced += Int64(n)
            return ByteChunk(out)
        }
    }

    /// The bytes sent: counted and hashed as they go.
    final class Tally: @unchecked Sendable {
        // Added to by the one task that sends the body.
        private var hasher: SHA256Hasher? = SHA256Hasher()
        private var bytes: Int64 = 0
        func add(_ piece: [UInt8]) {
            hasher!.update(piece)
            bytes += Int64(piece.count)
        }
        func result() -> (Int64, [UInt8]) { (bytes, hasher.take()!.finalize()) }
    }

    /// The gateway's peak resident memory (VmHWM), in MiB.
    static func peakMiB(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])! / 1024
    }

    @Test(.timeLimit(.minutes(20)))
    func fourGiBUpAndDownWithBoundedGatewayMemory() async throws {
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        let server = try await ServerProcess(dataDirectory: dataDirectory, store: .s3)
        defer { server.kill() }
        let client = try await HTTP.login(server.base)
        let path = try await client.createDeferredUpload()

        let size: Int64 = 4 << 30
        let uploaded = Tally()
        let pieces = try Sealer(key: SessionKey.random(), options: SealOptions(chunkSize: 1 << 20)).seal(RandomSource(total: size)).map { piece in
            uploaded.add(piece)
            return ByteBuffer(bytes: piece)
        }
        var request = HTTPClientRequest(url: server.base + path)
        request.method = .PATCH
        request.headers.add(name: "Authorization", value: "Bearer \(client.token!)")
        request.headers.add(name: "Tus-Resumable", value: "1.0.0")
        request.headers.add(name: "Upload-Offset", value: "0")
        request.headers.add(name: "Content-Type", value: "application/offset+octet-stream")
        request.body = .stream(pieces, length: .unknown)
        let response = try await HTTPClient.shared.execute(request, timeout: .minutes(15))
        #expect(response.status.code == 204, "\(response.status)")
        let (sealedBytes, sealedDigest) = uploaded.result()
        #expect(sealedBytes > size)
        let afterUpload = try Self.peakMiB(server.process.processIdentifier)

        let id = String(path.split(separator: "/").last!)
        var download = HTTPClientRequest(url: server.base + "/download/\(id)")
        download.headers.add(name: "Authorization", value: "Bearer \(client.token!)")
        let answer = try await HTTPClient.shared.execute(download, timeout: .minutes(15))
        #expect(answer.status.code == 200)
        var hasher = SHA256Hasher()
        var received: Int64 = 0
        for try await part in answer.body {
            part.withUnsafeReadableBytes { hasher.update($0) }
            received += Int64(part.readableBytes)
        }
        #expect(received == sealedBytes)
        #expect(hasher.finalize() == sealedDigest, "the download is byte-identical")
        let afterDownload = try Self.peakMiB(server.process.processIdentifier)
        print("S3 4 GiB: sealed \(sealedBytes) bytes; gateway peak RSS \(afterUpload) MiB after the upload, \(afterDownload) MiB after the download")
        #expect(afterDownload < 128, "peak \(afterDownload) MiB")
        #expect(try await client.send(.DELETE, "/files/\(id)").status == 204)
    }
}
