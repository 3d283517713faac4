/// One entry of a device's log: an event, where and when it happened, and its position in the log.
public struct LogRecord: Hashable, Sendable {
    /// The position of the record in its device's log, from 1 up without gaps.
    public var sequence: UInt64
    /// The term (epoch) of the device when it wrote the record; promotion raises it.
    public var term: UInt32
    /// The device that wrote the record.
    public var origin: DeviceID
    /// When the record was written.
    public var time: Timestamp
    /// What happened.
    public var event: Event

    /// Creates a log record.
    ///
    /// - Parameters:
    ///   - sequence: The position of the record in its device's log.
    ///   - term: The term of the device when it wrote the record.
    ///   - origin: The device that wrote the record.
    ///   - time: When the record was written.
    ///   - event: What happened.
    public init(sequence: UInt64, term: UInt32, origin: DeviceID, time: Timestamp, event: Event) {
        self.sequence = sequence
        self.term = term
        self.origin = origin
        self.time = time
        self.event = event
    }
}
