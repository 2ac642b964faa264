import Foundation

/// A minimal CBOR value for the tests: what CTAP2 uses (unsigned and negative integers, byte
/// and text strings, arrays, maps, booleans, null). Encoding is CTAP2 canonical: shortest
/// integer forms, definite lengths, map keys sorted by major type, then encoded length, then
/// bytes. Decoding rejects anything else CBOR allows (tags, floats, indefinite lengths).
indirect enum CBOR: Equatable {
    case unsigned(UInt64)
    /// The integer -1 - n.
    case negative(UInt64)
    case bytes([UInt8])
    case text(String)
    case array([CBOR])
    /// Pairs in the order given (encoding sorts them) or decoded.
    case map([Pair])
    case bool(Bool)
    case null

    struct Pair: Equatable {
        var key: CBOR
        var value: CBOR
    }

    struct DecodingError: Error, CustomStringConvertible {
        let description: String
    }

    static func int(_ value: Int) -> CBOR {
        value >= 0 ? .unsigned(UInt64(value)) : .negative(UInt64(-1 - value))
    }

    // MARK: reading values

    var intValue: Int? {
        switch self {
        case let .unsigned(n): return n <= UInt64(Int.max) ? Int(n) : nil
        case let .negative(n): return n < UInt64(Int.max) ? -1 - Int(n) : nil
        default: return nil
        }
    }

    var bytesValue: [UInt8]? {
        if case let .bytes(b) = self { return b }
        return nil
    }

    var textValue: String? {
        if case let .text(t) = self { return t }
        return nil
    }

    var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    var arrayValue: [CBOR]? {
        if case let .array(a) = self { return a }
        return nil
    }

    subscript(key: CBOR) -> CBOR? {
        guard case let .map(pairs) = self else { return nil }
        return pairs.first { $0.key == key }?.value
    }

    subscript(key: Int) -> CBOR? { self[.int(key)] }
    subscript(key: String) -> CBOR? { self[.text(key)] }

    // MARK: encoding

    var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    private static func head(_ major: UInt8, _ value: UInt64, into out: inout [UInt8]) {
        let m = major << 5
        switch value {
        case 0..<24: out.append(m | UInt8(value))
        case 24...0xFF: out += [m | 24, UInt8(value)]
        case 0x100...0xFFFF: out.append(m | 25); out += bigEndian(value, 2)
        case 0x1_0000...0xFFFF_FFFF: out.append(m | 26); out += bigEndian(value, 4)
        default: out.append(m | 27); out += bigEndian(value, 8)
        }
    }

    private static func bigEndian(_ value: UInt64, _ count: Int) -> [UInt8] {
        (0..<count).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    private func encode(into out: inout [UInt8]) {
        switch self {
        case let .unsigned(n): Self.head(0, n, into: &out)
        case let .negative(n): Self.head(1, n, into: &out)
        case let .bytes(b): Self.head(2, UInt64(b.count), into: &out); out += b
        case let .text(t):
            let utf8 = Array(t.utf8)
            Self.head(3, UInt64(utf8.count), into: &out)
            out += utf8
        case let .array(items):
            Self.head(4, UInt64(items.count), into: &out)
            for item in items { item.encode(into: &out) }
        case let .map(pairs):
            Self.head(5, UInt64(pairs.count), into: &out)
            let sorted = pairs.map { (key: $0.key.encoded, value: $0.value) }.sorted { a, b in
                let (ma, mb) = (a.key[0] >> 5, b.key[0] >> 5)
                if ma != mb { return ma < mb }
                if a.key.count != b.key.count { return a.key.count < b.key.count }
                return a.key.lexicographicallyPrecedes(b.key)
            }
            for pair in sorted {
                out += pair.key
                pair.value.encode(into: &out)
            }
        case let .bool(b): out.append(b ? 0xF5 : 0xF4)
        case .null: out.append(0xF6)
        }
    }

    // MARK: decoding

    /// Decodes exactly one item filling all of `bytes`.
    static func decode<B: Collection>(_ bytes: B) throws -> CBOR where B.Element == UInt8 {
        let input = Array(bytes)
        let (value, end) = try decodePrefix(input, at: 0)
        guard end == input.count else { throw DecodingError(description: "\(input.count - end) bytes after the item") }
        return value
    }

    /// Decodes one item starting at `offset`; returns it and the offset after it.
    static func decodePrefix(_ input: [UInt8], at offset: Int, depth: Int = 0) throws -> (CBOR, Int) {
        guard depth < 16 else { throw DecodingError(description: "nested too deeply") }
        var pos = offset
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, input.count - pos >= n else { throw DecodingError(description: "truncated at \(pos)") }
            defer { pos += n }
            return input[pos..<pos + n]
        }
        let initial = try take(1).first!
        let major = initial >> 5
        let info = initial & 0x1F
        let argument: UInt64
        switch info {
        case 0..<24: argument = UInt64(info)
        case 24...27:
            let size = 1 << Int(info - 24)
            argument = try take(size).reduce(0) { $0 << 8 | UInt64($1) }
        default: throw DecodingError(description: "unsupported additional info \(info) at \(offset)")
        }
        func count() throws -> Int {
            guard argument <= UInt64(input.count) else { throw DecodingError(description: "length \(argument) too long") }
            return Int(argument)
        }
        switch major {
        case 0: return (.unsigned(argument), pos)
        case 1: return (.negative(argument), pos)
        case 2: return (.bytes(Array(try take(count()))), pos)
        case 3:
            guard let text = String(bytes: try take(count()), encoding: .utf8) else {
                throw DecodingError(description: "invalid UTF-8 at \(offset)")
            }
            return (.text(text), pos)
        case 4:
            var items: [CBOR] = []
            for _ in 0..<(try count()) {
                let (item, next) = try decodePrefix(input, at: pos, depth: depth + 1)
                items.append(item)
                pos = next
            }
            return (.array(items), pos)
        case 5:
            var pairs: [Pair] = []
            for _ in 0..<(try count()) {
                let (key, afterKey) = try decodePrefix(input, at: pos, depth: depth + 1)
                let (value, afterValue) = try decodePrefix(input, at: afterKey, depth: depth + 1)
                pairs.append(Pair(key: key, value: value))
                pos = afterValue
            }
            return (.map(pairs), pos)
        case 7:
            switch info {
            case 20: return (.bool(false), pos)
            case 21: return (.bool(true), pos)
            case 22: return (.null, pos)
            default: throw DecodingError(description: "unsupported simple value \(info) at \(offset)")
            }
        default:
            throw DecodingError(description: "unsupported major type \(major) at \(offset)")
        }
    }
}

extension CBOR: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    init(integerLiteral value: Int) { self = .int(value) }
    init(stringLiteral value: String) { self = .text(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: CBOR...) { self = .array(elements) }
    init(dictionaryLiteral elements: (CBOR, CBOR)...) { self = .map(elements.map { Pair(key: $0.0, value: $0.1) }) }
}
