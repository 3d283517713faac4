import NIOCore
import NIOSSL

/// Drives a ``Negotiation`` on one connection, then authenticates every frame: inbound frames are opened
/// (their tags checked) before they go up the pipeline, outbound frames sealed. Nothing passes before
/// negotiation succeeds. It also sends heartbeats and closes a connection whose peer falls silent, as
/// ``LivenessStateMachine`` rules with its event loop's time. It tells the rules when the connection's consumer
/// asks to read (the `read` that passes it on the way out) and has read (`channelReadComplete`), and when the
/// channel's writability changes: a consumer that holds back its reads, being behind, does not make the peer
/// silent. Each heartbeat tick tells when it was due, so that an event loop held up past it does not either.
///
/// Bound to its channel's event loop.
final class NegotiationHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    struct Events: Sendable {
        var established: @Sendable (Negotiated) -> Void
        var failed: @Sendable (LinkError) -> Void
    }

    private var negotiation: Negotiation
    private let events: Events
    private let negotiationTimeout: TimeAmount
    private let heartbeatInterval: TimeAmount
    private let silenceLimit: TimeAmount
    private var sealer: FrameSealer?
    private var opener: FrameOpener?
    private var timeout: Scheduled<Void>?
    private var heartbeat: RepeatedTask?
    /// When the next heartbeat tick is due.
    private var nextHeartbeat: NIODeadline?
    private var liveness: LivenessStateMachine?
    private var finished = false

    init(
        negotiation: Negotiation,
        events: Events,
        negotiationTimeout: TimeAmount,
        heartbeatInterval: TimeAmount,
        silenceLimit: TimeAmount
    ) {
        self.negotiation = negotiation
        self.events = events
        self.negotiationTimeout = negotiationTimeout
        self.heartbeatInterval = heartbeatInterval
        self.silenceLimit = silenceLimit
    }

    func channelActive(context: ChannelHandlerContext) {
        liveness = LivenessStateMachine(
            negotiationTimeout: negotiationTimeout,
            silenceLimit: silenceLimit,
            now: context.eventLoop.now
        )
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: negotiationTimeout) {
            let (handler, context) = loopBound.value
            handler.tick(context: context)
        }
        perform(negotiation.start(), context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        liveness?.heard(at: context.eventLoop.now)
        guard var opener else {
            perform(negotiation.receive(frame), context: context)
            return
        }
        do {
            let opened = try opener.open(frame)
            self.opener = opener
            if opened.type == .heartbeat { return }
            if opened.type == .refuse {
                let refusal = try? Refusal.decode(opened.payload)
                fail(
                    context: context,
                    LinkError(.peerRefused(reason: refusal?.reason ?? "unknown", message: refusal?.message ?? ""))
                )
                return
            }
            context.fireChannelRead(wrapInboundOut(opened))
        } catch {
            fail(context: context, error)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        liveness?.readingChanged(false, at: context.eventLoop.now)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        liveness?.readingChanged(true, at: context.eventLoop.now)
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        liveness?.writabilityChanged(context.channel.isWritable, at: context.eventLoop.now)
        context.fireChannelWritabilityChanged()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard var sealer else {
            promise?.fail(LinkError(.protocolViolation("a frame written before negotiation finished")))
            return
        }
        let sealed = sealer.seal(unwrapOutboundIn(data))
        self.sealer = sealer
        context.write(wrapOutboundOut(sealed), promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        if !finished {
            finished = true
            events.failed(LinkError(.connectionClosed))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? LinkError {
            fail(context: context, error)
        } else if error is NIOSSLError || error is BoringSSLError {
            fail(context: context, LinkError(.tlsFailed("\(error)")))
        } else if let error = error as? IOError {
            fail(context: context, LinkError(.connectionBroken("\(error)")))
        } else {
            fail(context: context, LinkError(.malformed("\(error)")))
        }
    }

    private func perform(_ actions: [Negotiation.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let frame):
                context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
            case .established(let negotiated):
                timeout?.cancel()
                sealer = FrameSealer(key: negotiated.keys.sending)
                opener = FrameOpener(key: negotiated.keys.receiving)
                liveness?.established(at: context.eventLoop.now)
                startHeartbeats(context: context)
                events.established(negotiated)
            case .fail(let error):
                fail(context: context, error)
            }
        }
    }

    private func startHeartbeats(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        nextHeartbeat = context.eventLoop.now + heartbeatInterval
        heartbeat = context.eventLoop.scheduleRepeatedTask(initialDelay: heartbeatInterval, delay: heartbeatInterval) {
            _ in
            let (handler, context) = loopBound.value
            let now = context.eventLoop.now
            // The next run is scheduled a delay after this one ends, that is about now.
            let due = handler.nextHeartbeat ?? now
            handler.nextHeartbeat = now + handler.heartbeatInterval
            handler.tick(context: context, due: due)
        }
    }

    /// A timer fired, due at `due` when it is a heartbeat's: does what the liveness rules say.
    private func tick(context: ChannelHandlerContext, due: NIODeadline? = nil) {
        guard var liveness else { return }
        let action = liveness.tick(at: context.eventLoop.now, due: due)
        self.liveness = liveness
        switch action {
        case .nothing:
            break
        case .sendHeartbeat:
            guard var sealer else { return }
            let frame = sealer.seal(Frame(type: .heartbeat, payload: ByteBuffer()))
            self.sealer = sealer
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        case .fail(let error):
            fail(context: context, error)
        }
    }

    private func stopTimers() {
        liveness?.finish()
        timeout?.cancel()
        heartbeat?.cancel()
    }

    private func fail(context: ChannelHandlerContext, _ error: LinkError) {
        stopTimers()
        if !finished {
            finished = true
            events.failed(error)
        }
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension NegotiationHandler: Sendable {}
