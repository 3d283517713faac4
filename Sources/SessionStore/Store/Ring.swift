/// The latest elements appended, at most `capacity` of them, oldest first: appending to a full ring forgets the
/// oldest element and returns it.
///
/// Each element keeps the index it was appended at, counted from the first ever appended (or since
/// ``removeAll()``): the ring holds the indices `startIndex..<endIndex`, so an index taken earlier still names
/// the same element, or one the ring has forgotten.
///
/// Its storage reaches `capacity` elements and never moves again: the writer appends to rings within its
/// commits, where growing a buffer of a quarter of a million elements would copy every one.
struct Ring<Element>: RandomAccessCollection {
    let capacity: Int
    private var slots: [Element] = []
    private(set) var startIndex = 0
    private(set) var endIndex = 0

    init(capacity: Int) {
        precondition(capacity > 0, "a ring holds at least one element")
        self.capacity = capacity
    }

    subscript(index: Int) -> Element {
        get { slots[slot(of: index)] }
        set { slots[slot(of: index)] = newValue }
    }

    /// Where the element at `index`, one the ring holds, is stored.
    private func slot(of index: Int) -> Int {
        precondition(index >= startIndex && index < endIndex, "ring index \(index) outside \(startIndex)..<\(endIndex)")
        return index % capacity
    }

    /// Takes the room of `capacity` elements at once.
    mutating func reserveFullCapacity() {
        slots.reserveCapacity(capacity)
    }

    /// Appends `element` at index `endIndex`; when the ring was full, forgets the oldest element and returns it
    /// (it was at `startIndex - 1` once this returns).
    @discardableResult
    mutating func append(_ element: Element) -> Element? {
        var forgotten: Element?
        if endIndex - startIndex == capacity {
            forgotten = slots[startIndex % capacity]
            startIndex += 1
        }
        let slot = endIndex % capacity
        if slot == slots.count { slots.append(element) } else { slots[slot] = element }
        endIndex += 1
        return forgotten
    }

    /// Forgets every element; indices count from 0 again.
    mutating func removeAll() {
        slots.removeAll()
        startIndex = 0
        endIndex = 0
    }
}

extension Ring: Sendable where Element: Sendable {}
