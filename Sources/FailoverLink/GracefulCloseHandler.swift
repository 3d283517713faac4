import NIOCore

/// Closes a connection the way a device that stops should, so that the peer reads the end of the stream and
/// never a reset.
///
/// On ``CloseGracefully`` it closes its output (a FIN, after TLS's close_notify when TLS is on), and from then
/// on drops every frame that still arrives and keeps reading, whatever the reader above does, until the peer
/// closes its side too; a peer that has not within `timeout` (or falls silent, for the negotiation handler
/// below) is cut. A close asked from above meanwhile completes when the connection has closed, rather than
/// cutting it with bytes unread, which would make the kernel send the peer a reset. Closes asked for before
/// ``CloseGracefully`` pass through untouched.
///
/// Sits between the negotiation handler and the `NIOAsyncChannel`. Bound to its channel's event loop.
final class GracefulCloseHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    /// The outbound user event that begins a graceful close.
    struct CloseGracefully: Sendable {}

    private let timeout: TimeAmount
    private var closing = false
    private var deadline: Scheduled<Void>?

    /// - Parameter timeout: how long the peer is given to close its side after this side closed its output.
    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The reader above may have stopped asking for reads; the end of the peer's stream must still be read.
        if closing { context.read() }
        context.fireChannelReadComplete()
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is CloseGracefully else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        promise?.succeed()
        guard !closing else { return }
        closing = true
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.close(promise: nil)
        }
        let outputClosed = context.eventLoop.makePromise(of: Void.self)
        outputClosed.futureResult.assumeIsolated().whenFailure { _ in
            // No half-close here (the connection is closing already, say): close it outright.
            context.close(promise: nil)
        }
        context.close(mode: .output, promise: outputClosed)
        context.read()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard closing, mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        // The connection closes once the peer has closed its side (or fell silent).
        if let promise { context.channel.closeFuture.cascade(to: promise) }
    }
}

@available(*, unavailable)
extension GracefulCloseHandler: Sendable {}
