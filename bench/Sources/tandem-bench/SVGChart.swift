import Foundation

/// Line charts of a few series against a log-scale x axis, in panels side by side, written as self-contained SVG
/// text (no scripts, fonts or images from elsewhere).
struct SVGChart {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
    }

    struct Panel {
        /// The panel's heading, which is also its y axis's label.
        var title: String
        var series: [Series]
    }

    var title: String
    var xLabel: String
    var panels: [Panel]
    /// Lines under the chart, such as the command that made it and when.
    var caption: [String]

    private let panelWidth = 480.0
    private let plotTop = 96.0
    private let plotBottom = 336.0
    private let plotLeft = 78.0
    private let plotRight = 24.0

    func svg() -> String {
        let width = panelWidth * Double(max(panels.count, 1))
        let height = plotBottom + 70 + 18 * Double(caption.count)
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(fmt(width))" height="\(fmt(height))" \
            viewBox="0 0 \(fmt(width)) \(fmt(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(fmt(width / 2))" y="26" font-size="17" text-anchor="middle">\(escaped(title))</text>

            """
        out += legend(width: width)
        for (index, panel) in panels.enumerated() {
            out += self.panel(panel, left: panelWidth * Double(index))
        }
        for (index, line) in caption.enumerated() {
            let y = plotBottom + 66 + 18 * Double(index)
            out += "<text x=\"12\" y=\"\(fmt(y))\" fill=\"#444\">\(escaped(line))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// One entry per series name, in the order of first appearance, centred under the title.
    private func legend(width: Double) -> String {
        var entries: [(name: String, color: String)] = []
        for series in panels.flatMap(\.series) where !entries.contains(where: { $0.name == series.name }) {
            entries.append((series.name, series.color))
        }
        let entryWidth = 120.0
        var x = width / 2 - entryWidth * Double(entries.count) / 2
        var out = ""
        for entry in entries {
            out += """
                <line x1="\(fmt(x))" y1="48" x2="\(fmt(x + 24))" y2="48" stroke="\(entry.color)" stroke-width="2"/>
                <circle cx="\(fmt(x + 12))" cy="48" r="3.5" fill="\(entry.color)"/>
                <text x="\(fmt(x + 30))" y="52">\(escaped(entry.name))</text>

                """
            x += entryWidth
        }
        return out
    }

    private func panel(_ panel: Panel, left: Double) -> String {
        let x0 = left + plotLeft
        let x1 = left + panelWidth - plotRight
        let allPoints = panel.series.flatMap(\.points).filter { $0.x > 0 && $0.y.isFinite }
        var low = log10(allPoints.map(\.x).min() ?? 1)
        var high = log10(allPoints.map(\.x).max() ?? 10)
        let pad = high - low < 0.5 ? 0.5 : 0.25
        low -= pad
        high += pad
        let step = niceStep((allPoints.map(\.y).max() ?? 1) / 5)
        let top = max(((allPoints.map(\.y).max() ?? 1) * 1.05 / step).rounded(.up), 1) * step
        func px(_ x: Double) -> Double { x0 + (log10(x) - low) / (high - low) * (x1 - x0) }
        func py(_ y: Double) -> Double { plotBottom - y / top * (plotBottom - plotTop) }

        var out = """
            <text x="\(fmt((x0 + x1) / 2))" y="\(fmt(plotTop - 12))" font-size="14" text-anchor="middle" \
            font-weight="bold">\(escaped(panel.title))</text>

            """
        // Horizontal grid and the y axis's ticks.
        for tick in stride(from: 0.0, through: top + step / 2, by: step) {
            let y = fmt(py(tick))
            out += """
                <line x1="\(fmt(x0))" y1="\(y)" x2="\(fmt(x1))" y2="\(y)" stroke="#ddd"/>
                <text x="\(fmt(x0 - 6))" y="\(y)" dy="4" text-anchor="end">\(shortNumber(tick))</text>

                """
        }
        // Decades (labelled, with a grid line) and the minor ticks between them.
        for decade in Int(low.rounded(.down))...Int(high.rounded(.up)) {
            for multiple in 1...9 {
                let value = Double(multiple) * pow(10, Double(decade))
                guard log10(value) >= low, log10(value) <= high else { continue }
                let x = fmt(px(value))
                if multiple == 1 {
                    out += """
                        <line x1="\(x)" y1="\(fmt(plotTop))" x2="\(x)" y2="\(fmt(plotBottom))" stroke="#ddd"/>
                        <text x="\(x)" y="\(fmt(plotBottom + 18))" text-anchor="middle">\(shortNumber(value))</text>

                        """
                } else {
                    out += "<line x1=\"\(x)\" y1=\"\(fmt(plotBottom))\" x2=\"\(x)\" y2=\"\(fmt(plotBottom + 4))\" "
                    out += "stroke=\"#888\"/>\n"
                }
            }
        }
        // The axes and their labels.
        out += """
            <polyline points="\(fmt(x0)),\(fmt(plotTop)) \(fmt(x0)),\(fmt(plotBottom)) \(fmt(x1)),\(fmt(plotBottom))" \
            fill="none" stroke="#222"/>
            <text x="\(fmt((x0 + x1) / 2))" y="\(fmt(plotBottom + 38))" text-anchor="middle">\(escaped(xLabel))</text>
            <text transform="translate(\(fmt(left + 18)),\(fmt((plotTop + plotBottom) / 2))) rotate(-90)" \
            text-anchor="middle">\(escaped(panel.title))</text>

            """
        // The series: a line through the points, and each point with its value as a tooltip.
        for series in panel.series {
            let points = series.points.filter { $0.x > 0 && $0.y.isFinite }
            out += "<polyline fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"2\" points=\""
            out += points.map { "\(fmt(px($0.x))),\(fmt(py($0.y)))" }.joined(separator: " ") + "\"/>\n"
            for point in points {
                out += """
                    <circle cx="\(fmt(px(point.x)))" cy="\(fmt(py(point.y)))" r="3.5" fill="\(series.color)">\
                    <title>\(escaped(series.name)) at \(shortNumber(point.x)): \(String(format: "%.1f", point.y))\
                    </title></circle>

                    """
            }
        }
        return out
    }
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
private func niceStep(_ raw: Double) -> Double {
    guard raw > 0, raw.isFinite else { return 1 }
    let power = pow(10, log10(raw).rounded(.down))
    let fraction = raw / power
    return power * (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10)
}

/// 10M, 250k, 12.5: a number short enough for an axis.
private func shortNumber(_ value: Double) -> String {
    if abs(value) >= 1e6 { return String(format: "%gM", value / 1e6) }
    if abs(value) >= 1e3 { return String(format: "%gk", value / 1e3) }
    return String(format: "%g", value)
}

private func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

private func escaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
