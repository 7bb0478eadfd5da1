/** Whom a sign-in is counted against: the peer, or what a trusted proxy says, never what the client claims. */
import { describe, expect, it } from "vitest"
import { sourceAddress, trustedProxyList } from "../../src/console/SignIn.ts"

describe("the source address of a sign-in", () => {
  const none = trustedProxyList([])
  const proxies = trustedProxyList(["10.0.4.10", "10.0.5.0/24", "fd00::/8"])

  it("is the peer when no proxy is trusted, whatever X-Forwarded-For says", () => {
    expect(sourceAddress("192.0.2.7", "203.0.113.1", none)).toBe("192.0.2.7")
    expect(sourceAddress("::ffff:192.0.2.7", undefined, none)).toBe("192.0.2.7")
    expect(sourceAddress(undefined, "203.0.113.1", none)).toBe("unknown")
  })

  it("counts an IPv6 address by its /64", () => {
    expect(sourceAddress("2001:db8:1:2:aaaa::1", undefined, none)).toBe("2001:db8:1:2::/64")
    expect(sourceAddress("2001:db8:1:2:bbbb:cccc:dddd:eeee", undefined, none)).toBe("2001:db8:1:2::/64")
    expect(sourceAddress("2001:db8::1", undefined, none)).toBe("2001:db8:0:0::/64")
    expect(sourceAddress("::1", undefined, none)).toBe("0:0:0:0::/64")
  })

  it("takes the nearest untrusted hop from a trusted proxy, ignoring what the client wrote further left", () => {
    expect(sourceAddress("10.0.4.10", "203.0.113.1", proxies)).toBe("203.0.113.1")
    expect(sourceAddress("10.0.4.10", "198.51.100.9, 203.0.113.1", proxies)).toBe("203.0.113.1")
    expect(sourceAddress("10.0.4.10", "198.51.100.9, 203.0.113.1, 10.0.5.3", proxies)).toBe("203.0.113.1")
    expect(sourceAddress("fd12::1", "2001:db8:9:9::5", proxies)).toBe("2001:db8:9:9::/64")
    // A hop that is not an address stops the walk at the last trusted one.
    expect(sourceAddress("10.0.4.10", "203.0.113.1, not-an-address", proxies)).toBe("10.0.4.10")
    // An untrusted peer's header is not believed.
    expect(sourceAddress("192.0.2.7", "203.0.113.1", proxies)).toBe("192.0.2.7")
  })
})
