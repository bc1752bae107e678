// The load generator's engine: every connection on one thread, plain sockets and epoll, a
// WebSocket client (RFC 6455) cut down to what the benchmark needs. A full client (swift-websocket's
// WSClient on NIO and Swift concurrency) cost the generator about as much CPU per frame as the
// gateway; on two shared cores that measured the generator, not the gateway.
import CEpoll
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One chat connection: a socket past its upgrade, its send schedule and what it measured.
final class LoadConnection {
    let fd: Int32
    let session: Int
    let frames: [(key: UInt64, text: [UInt8])]
    let phase: UInt64
    var nextFrame = 0
    var highestSeq: UInt64 = 0
    var acked: UInt64 = 0
    var input: [UInt8] = []
    var output: [UInt8] = []
    var closedWith: UInt16?
    var result = ConnectionResult()

    init(fd: Int32, session: Int, frames: [(key: UInt64, text: [UInt8])], phase: UInt64) {
        self.fd = fd
        self.session = session
        self.frames = frames
        self.phase = phase
    }
}

enum LoadError: Error, CustomStringConvertible {
    case connect(String)
    var description: String { switch self { case .connect(let why): "chat connection failed: \(why)" } }
}

/// Opens a TCP connection to `host:port` and upgrades it to GET /chat for `session`.
func openChat(port: UInt16, session: String, token: String) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LoadError.connect("socket: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw LoadError.connect("connect: errno \(errno)") }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    let request = "GET /chat?session=\(session) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: safechat.v1\r\n"
        + "Authorization: Bearer \(token)\r\n\r\n"
    try writeAll(fd, Array(request.utf8))
    // The answer head, byte by byte so that no frame after it is swallowed.
    var head: [UInt8] = []
    var byte: UInt8 = 0
    while !(head.count >= 4 && head[head.count - 4..<head.count].elementsEqual([13, 10, 13, 10])) {
        guard read(fd, &byte, 1) == 1, head.count < 8192 else { close(fd); throw LoadError.connect("the upgrade answer ended early") }
        head.append(byte)
    }
    guard String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
        close(fd)
        throw LoadError.connect(String(decoding: head.prefix(80), as: UTF8.self))
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
        guard n > 0 else { throw LoadError.connect("write: errno \(errno)") }
        written += n
    }
}

/// A masked client frame (RFC 6455 5.3).
func clientFrame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
    var frame: [UInt8] = [0x80 | opcode]
    if payload.count < 126 {
        frame.append(0x80 | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
        frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
        frame.append(0x80 | 127)
        frame += (0..<8).map { UInt8((UInt64(payload.count) >> (56 - 8 * UInt64($0))) & 0xFF) }
    }
    let mask = withUnsafeBytes(of: UInt32.random(in: 0...UInt32.max)) { Array($0) }
    frame += mask
    frame.reserveCapacity(frame.count + payload.count)
    for (i, byte) in payload.enumerated() { frame.append(byte ^ mask[i & 3]) }
    return frame
}

/// Runs the schedule: each connection sends its frames every `interval` from `start + phase`
/// until `endSends` (or `stop()` says so), acknowledges what arrived on each of its ticks, and
/// everything keeps being read until `endReads`. `onTick` runs about every 250 ms.
func runLoad(_ connections: [LoadConnection], times: [SendTimes], start: UInt64, interval: UInt64, measureFrom: UInt64,
             endSends: UInt64, drain: UInt64, stop: () -> Bool, onTick: () -> Void) {
    let epoll = epoll_create1(0)
    defer { close(epoll) }
    var byFD: [Int32: LoadConnection] = [:]
    for connection in connections {
        byFD[connection.fd] = connection
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: connection.fd))
        epoll_ctl(epoll, EPOLL_CTL_ADD, connection.fd, &event)
    }
    // Sends in time order: the phases sorted, then round after round.
    let order = connections.sorted { $0.phase < $1.phase }
    var position = 0
    var round: UInt64 = 0
    var sendsOver = false
    var endReads = UInt64.max
    var events = [epoll_event](repeating: epoll_event(), count: 256)
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    var lastTick: UInt64 = 0

    func flush(_ connection: LoadConnection) {
        while !connection.output.isEmpty {
            let n = connection.output.withUnsafeBytes { write(connection.fd, $0.baseAddress!, $0.count) }
            if n <= 0 {
                var event = epoll_event(events: EPOLLIN.rawValue | EPOLLOUT.rawValue, data: epoll_data_t(fd: connection.fd))
                epoll_ctl(epoll, EPOLL_CTL_MOD, connection.fd, &event)
                return
            }
            connection.output.removeFirst(n)
        }
    }
    func send(_ connection: LoadConnection, _ frame: [UInt8]) {
        connection.output += frame
        if connection.output.count == frame.count { flush(connection) }
    }
    func ackIfNeeded(_ connection: LoadConnection) {
        guard connection.highestSeq > connection.acked, connection.closedWith == nil else { return }
        send(connection, clientFrame(opcode: 1, Array(#"{"seq":\#(connection.highestSeq),"type":"ack","v":1}"#.utf8)))
        connection.acked = connection.highestSeq
    }

    while true {
        var clock = now()
        if clock - lastTick >= 250_000_000 { onTick(); lastTick = clock }
        // Due sends.
        while !sendsOver {
            let connection = order[position]
            let due = start + connection.phase + round * interval
            if due >= endSends || stop() {
                sendsOver = true
                endReads = clock + drain
                break
            }
            // Up to a millisecond early, so that the loop sleeps in epoll_wait (millisecond
            // timeouts) instead of spinning on the cores the gateway needs; each send's time is
            // taken when it is written, so latencies stay exact.
            guard due <= clock + 1_000_000 else { break }
            if connection.closedWith == nil && connection.nextFrame < connection.frames.count {
                let frame = connection.frames[connection.nextFrame]
                let time = now()
                times[connection.session].record(frame.key, at: time)
                send(connection, clientFrame(opcode: 1, frame.text))
                connection.nextFrame += 1
                connection.result.sent += 1
                if time >= measureFrom { connection.result.sentMeasured += 1 }
            }
            ackIfNeeded(connection)
            position += 1
            if position == order.count { position = 0; round += 1 }
        }
        if sendsOver && clock >= endReads { break }
        let nextDue = sendsOver ? endReads : start + order[position].phase + round * interval
        let timeout = Int32(min(250, nextDue > clock ? (nextDue - clock) / 1_000_000 : 0))  // at least 1 while sending
        let count = epoll_wait(epoll, &events, Int32(events.count), timeout)
        clock = now()
        guard count > 0 else { continue }
        for event in events[0..<Int(count)] {
            guard let connection = byFD[event.data.fd] else { continue }
            if event.events & EPOLLOUT.rawValue != 0 {
                var readable = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: connection.fd))
                epoll_ctl(epoll, EPOLL_CTL_MOD, connection.fd, &readable)
                flush(connection)
            }
            guard event.events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(connection.fd, $0.baseAddress!, $0.count) }
            if n <= 0 {
                if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    if connection.closedWith == nil { connection.closedWith = 1006 }
                    epoll_ctl(epoll, EPOLL_CTL_DEL, connection.fd, nil)
                }
                continue
            }
            connection.input += buffer[0..<n]
            consumeFrames(connection, times: times, arrived: clock, measureFrom: measureFrom) { send(connection, clientFrame(opcode: 10, $0)) }
        }
    }
    for connection in connections { ackIfNeeded(connection); flush(connection) }
}

let deliveryMarker = Array(#""type":"delivery""#.utf8)
let sentMarker = Array(#""type":"sent""#.utf8)
let errorMarker = Array(#""type":"error""#.utf8)
let messageIDMarker = Array(#""message_id":""#.utf8)
let seqMarker = Array(#""seq":"#.utf8)

/// Parses the complete server frames in `connection.input` (unmasked, RFC 6455 5.2).
func consumeFrames(_ connection: LoadConnection, times: [SendTimes], arrived: UInt64, measureFrom: UInt64, pong: ([UInt8]) -> Void) {
    var offset = 0
    let input = connection.input
    while input.count - offset >= 2 {
        let opcode = input[offset] & 0x0F
        var length = Int(input[offset + 1] & 0x7F)
        var header = 2
        if length == 126 {
            guard input.count - offset >= 4 else { break }
            length = Int(input[offset + 2]) << 8 | Int(input[offset + 3])
            header = 4
        } else if length == 127 {
            guard input.count - offset >= 10 else { break }
            length = (0..<8).reduce(0) { $0 << 8 | Int(input[offset + 2 + $1]) }
            header = 10
        }
        guard input.count - offset >= header + length else { break }
        let payload = offset + header..<offset + header + length
        switch opcode {
        case 1:
            input.withUnsafeBufferPointer { all in
                let text = UnsafeBufferPointer(rebasing: all[payload])
                if field(deliveryMarker, in: text, length: 0) != nil {
                    if let id = field(messageIDMarker, in: text, length: 32), let sent = times[connection.session].time(of: idKey(id)) {
                        connection.result.delivered += 1
                        if sent >= measureFrom { connection.result.latencies.append(UInt32(min(UInt64(UInt32.max), (arrived - sent) / 1000))) }
                    }
                    if let digits = field(seqMarker, in: text, length: 20) {
                        var seq: UInt64 = 0
                        for digit in digits { guard digit >= 48 && digit <= 57 else { break }; seq = seq * 10 + UInt64(digit - 48) }
                        connection.highestSeq = max(connection.highestSeq, seq)
                    }
                } else if field(sentMarker, in: text, length: 0) != nil {
                    connection.result.confirmed += 1
                } else if field(errorMarker, in: text, length: 0) != nil {
                    connection.result.errors += 1
                }
            }
        case 8:
            connection.closedWith = length >= 2 ? UInt16(input[payload.lowerBound]) << 8 | UInt16(input[payload.lowerBound + 1]) : 1005
        case 9:
            pong(Array(input[payload]))
        default:
            break
        }
        offset += header + length
    }
    if offset > 0 { connection.input.removeFirst(offset) }
}
