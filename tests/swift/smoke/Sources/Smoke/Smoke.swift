import Foundation
import smoke_ffiFFI

public func add(_ a: Int32, _ b: Int32) -> Int32 {
    smoke_ffi_add(a, b)
}

public func greet(_ name: String) -> String {
    let bytes = Array(name.utf8)
    let buf = bytes.withUnsafeBufferPointer { smoke_ffi_greet($0.baseAddress, Int32($0.count)) }
    defer { smoke_ffi_buffer_free(buf) }
    return String(decoding: Data(bytes: buf.data!, count: Int(buf.len)), as: UTF8.self)
}

// Continuations waiting for a native callback, keyed by handle (the pattern uniffi uses).
private let lock = NSLock()
private var waiting: [UInt64: CheckedContinuation<Int32, Never>] = [:]
private var nextHandle: UInt64 = 1

/// Doubles `value` on a native thread and resumes when the C callback arrives.
public func doubledLater(_ value: Int32) async -> Int32 {
    await withCheckedContinuation { (cont: CheckedContinuation<Int32, Never>) in
        lock.lock()
        let handle = nextHandle
        nextHandle += 1
        waiting[handle] = cont
        lock.unlock()
        let ok = smoke_ffi_call_from_thread({ handle, result in
            lock.lock()
            let cont = waiting.removeValue(forKey: handle)
            lock.unlock()
            cont?.resume(returning: result)
        }, handle, value)
        precondition(ok, "smoke_ffi_call_from_thread failed")
    }
}
