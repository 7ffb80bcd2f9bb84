import Foundation
import Testing
@testable import TidemarkCore
import TidemarkLog
import TidemarkPostgres
import TidemarkSQLite
import TidemarkTestSupport

/// `tidemark verify --show-values` of a PostgreSQL target, as the built
/// executable: each differing column with both values, missing and extra
/// rows with the side that has them, the same as JSON data.
@Suite struct PostgresShowValuesTests {
    @Test("verify --show-values names the differing columns of a PostgreSQL target with both values")
    func showValues() throws {
        let f = try PostgresVerifyTests.Fixture("showvalues", schema: PostgresVerifyTests.itemsSchema,
                                                rows: PostgresVerifyTests.itemsRows, tables: PostgresVerifyTests.itemsTables)
        defer { f.remove() }
        try f.migrate()
        let pg = try f.pg()
        defer { pg.close() }
        try pg.execute("""
            UPDATE public.items SET qty = 999, name = 'renamed' WHERE id = 5;
            DELETE FROM public.items WHERE id = 11;
            INSERT INTO public.items(id, name) VALUES (1000, 'not in the source');
            UPDATE public.tags SET label = 'changed' WHERE code = 'a' AND n = 3;
            """)
        let r = try runTidemark(["verify", "--show-values", "--plan", f.planPath], in: f.dir)
        #expect(r.status == 1, "differences exit 1: \(r.stdout) \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        for expected in [
            #"  key {"id":5}: name: source "item 5", target "renamed""#,
            #"  key {"id":5}: qty: source 35, target 999"#,
            #"  key {"id":1000}: extra in the target, not in the source; target row {"id":1000,"name":"not in the source","price":null,"data":null,"qty":null}"#,
            #"  key {"code":"a","n":3}: label: source "label a3", target "changed""#,
        ] {
            #expect(lines.contains(expected), "lacks '\(expected)':\n\(r.stdout)")
        }
        #expect(lines.contains { $0.hasPrefix(#"  key {"id":11}: missing from the target; source row {"id":11,"name":"item 11""#) }, "\(r.stdout)")

        let json = try runTidemark(["verify", "--show-values", "--json", "--plan", f.planPath], in: f.dir)
        #expect(json.status == 1, "\(json.stderr)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let items = try #require((o["tables"] as? [[String: Any]])?.first { $0["source"] as? String == "items" })
        #expect((items["missing"] as? [[String: Any]])?.first?["id"] as? Int == 11, "\(items)")
        let five = try #require((items["values"] as? [[String: Any]])?.first { ($0["key"] as? [String: Any])?["id"] as? Int == 5 })
        let columns = (five["columns"] as? [[String: Any]] ?? []).compactMap { $0["column"] as? String }
        #expect(columns == ["name", "qty"], "\(five)")
    }
}
