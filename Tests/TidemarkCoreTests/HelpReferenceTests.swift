import Foundation
import Testing
import TidemarkTestSupport

/// README's "Command reference" is the `--help` of every command, as the
/// built executable prints it at 100 columns. The commands are found by
/// walking the executable's own SUBCOMMANDS lists, so a new command needs a
/// new block. `TIDEMARK_UPDATE_README=1 swift test --filter HelpReference`
/// rewrites the section.
@Suite struct HelpReferenceTests {
    @Test(.timeLimit(.minutes(10)))
    func readmeShowsTheHelpOfEveryCommand() throws {
        try withTemporaryDirectory { dir in
            let commands = try HelpReference.commands(in: dir)
            #expect(commands.contains(["migrate"]) && commands.contains(["log", "as-of"]) && commands.contains(["capture", "run"]), "\(commands)")
            var blocks: [(command: String, help: String)] = []
            for c in commands {
                let help = try HelpReference.help(c, in: dir)
                #expect(!help.isEmpty, "\(c)")
                // Help texts name no issue numbers.
                #expect(help.range(of: #"(?i)issue\s*#?\d|#\d+"#, options: .regularExpression) == nil, "\(c): \(help)")
                blocks.append((( ["tidemark"] + c).joined(separator: " "), help))
            }
            let readmePath = HelpReference.readmePath
            let readme = try String(contentsOfFile: readmePath, encoding: .utf8)
            if ProcessInfo.processInfo.environment["TIDEMARK_UPDATE_README"] == "1" {
                let section = HelpReference.section(blocks, intro: HelpReference.currentSection(in: readme).flatMap(HelpReference.intro(of:)))
                try HelpReference.replacingSection(in: readme, with: section).write(toFile: readmePath, atomically: true, encoding: .utf8)
                return
            }
            let current = HelpReference.currentSection(in: readme)
            #expect(current != nil, "README.md has no '## Command reference' section; create it with `TIDEMARK_UPDATE_README=1 swift test --filter HelpReference`")
            guard let current else { return }
            let have = HelpReference.blocks(in: current)
            for b in blocks {
                #expect(have[b.command] == b.help,
                        "README's block for `\(b.command) --help` differs from the executable's (\(have[b.command] == nil ? "missing" : "changed")); regenerate with `TIDEMARK_UPDATE_README=1 swift test --filter HelpReference`")
            }
            let extra = Set(have.keys).subtracting(blocks.map(\.command))
            #expect(extra.isEmpty, "README documents commands the executable does not have: \(extra.sorted()); regenerate with `TIDEMARK_UPDATE_README=1 swift test --filter HelpReference`")
        }
    }
}

/// Reading the executable's help, shared by the command-line tests.
enum HelpReference {
    static let title = "## Command reference"

    static var readmePath: String {
        // Tests/TidemarkCoreTests/HelpReferenceTests.swift → the package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md").path
    }

    /// `tidemark COMMAND --help` at a fixed width, in any environment.
    static func help(_ command: [String], in dir: String) throws -> String {
        let r = try runTidemark(command + ["--help"], in: dir, environment: ["COLUMNS": "100", "TIDEMARK_PLAN": ""], timeoutSeconds: 60)
        guard r.status == 0 else { throw TestFailure("tidemark \(command.joined(separator: " ")) --help exited \(r.status): \(r.stderr)") }
        var text = r.stdout
        while text.last == "\n" || text.last == " " { text.removeLast() }
        return text
    }

    /// Every command path, depth first in the order help lists them; the
    /// root is `[]`, `help` is left out.
    static func commands(in dir: String) throws -> [[String]] {
        var out: [[String]] = []
        func walk(_ path: [String]) throws {
            out.append(path)
            for sub in subcommands(try help(path, in: dir)) { try walk(path + [sub]) }
        }
        try walk([])
        return out
    }

    /// The names under SUBCOMMANDS: (two spaces, a name; continuation lines
    /// are indented further).
    static func subcommands(_ help: String) -> [String] {
        var names: [String] = []
        var inside = false
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "SUBCOMMANDS:" { inside = true; continue }
            guard inside else { continue }
            if line.isEmpty { break }
            guard line.hasPrefix("  "), !line.hasPrefix("   ") else { continue }
            let name = line.dropFirst(2).prefix { $0 != " " }
            if !name.isEmpty && name != "help" { names.append(String(name)) }
        }
        return names
    }

    /// An option's lines in OPTIONS (its own line and its continuation
    /// lines), or nil when the command does not take it.
    static func optionBlock(_ option: String, in help: String) -> String? {
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false)
        guard let i = lines.firstIndex(where: { $0.hasPrefix("  " + option + " ") || $0 == "  " + option }) else { return nil }
        var block = [lines[i]]
        var j = i + 1
        while j < lines.count, lines[j].hasPrefix("                    ") {
            block.append(lines[j])
            j += 1
        }
        return block.joined(separator: "\n")
    }

    /// The section: the title, the prose README already has before the
    /// first block (kept as written), then one block per command.
    static func section(_ blocks: [(command: String, help: String)], intro: String? = nil) -> String {
        var s = title + "\n"
        var prose = intro ?? "\nThe `--help` of every command, as `tidemark` prints it (at 100 columns). A test compares this section with the executable; `TIDEMARK_UPDATE_README=1 swift test --filter HelpReference` rewrites it."
        while prose.last == "\n" { prose.removeLast() }
        s += prose + "\n"
        for b in blocks {
            s += "\n### `\(b.command)`\n\n```text\n\(b.help)\n```\n"
        }
        // A blank line before the next heading.
        return s + "\n"
    }

    /// The prose between the section's title and its first block.
    static func intro(of section: String) -> String? {
        guard let titleEnd = section.range(of: title + "\n") else { return nil }
        let rest = section[titleEnd.upperBound...]
        guard let first = rest.range(of: "\n### `") else { return String(rest) }
        return String(rest[..<first.lowerBound])
    }

    /// The section, from its title to the next `## ` heading (or the end).
    static func currentSection(in readme: String) -> String? {
        guard let start = readme.range(of: "\n" + title + "\n") else { return nil }
        let rest = readme[start.lowerBound...].dropFirst()
        if let next = rest.range(of: "\n## ") {
            return String(rest[..<next.lowerBound]) + "\n"
        }
        return String(rest)
    }

    /// README with the section replaced, or inserted before `## Modules`
    /// (else at the end).
    static func replacingSection(in readme: String, with section: String) -> String {
        if let current = currentSection(in: readme), let range = readme.range(of: current) {
            return readme.replacingCharacters(in: range, with: section)
        }
        if let modules = readme.range(of: "\n## Modules\n") {
            return readme.replacingCharacters(in: modules, with: "\n" + section + "\n## Modules\n")
        }
        return readme + "\n" + section
    }

    /// `### \`tidemark …\`` → the text of its code block.
    static func blocks(in section: String) -> [String: String] {
        var out: [String: String] = [:]
        var command: String?
        var body: [Substring]?
        for line in section.split(separator: "\n", omittingEmptySubsequences: false) {
            if body != nil {
                if line == "```" {
                    if let command { out[command] = body!.joined(separator: "\n") }
                    body = nil
                    command = nil
                } else {
                    body!.append(line)
                }
            } else if line.hasPrefix("### `"), line.hasSuffix("`") {
                command = String(line.dropFirst(5).dropLast())
            } else if line == "```text", command != nil {
                body = []
            }
        }
        return out
    }
}
