-- Requests shaped like a browser's call to a JSON API behind the proxy:
-- the header set a current Chrome sends with a fetch() (about 900 bytes,
-- a session and analytics cookies, a W3C traceparent), instead of wrk's
-- bare request. The answer is the 4 KiB api.json. Reports like report.lua.
wrk.headers["Host"] = "app.example.com"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
wrk.headers["Accept"] = "application/json, text/plain, */*"
wrk.headers["Accept-Language"] = "en-GB,en-US;q=0.9,en;q=0.8"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd"
wrk.headers["Referer"] = "https://app.example.com/projects/4711/deploys?tab=history"
wrk.headers["Origin"] = "https://app.example.com"
wrk.headers["Sec-Ch-Ua"] = "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""
wrk.headers["Sec-Ch-Ua-Mobile"] = "?0"
wrk.headers["Sec-Ch-Ua-Platform"] = "\"Linux\""
wrk.headers["Sec-Fetch-Dest"] = "empty"
wrk.headers["Sec-Fetch-Mode"] = "cors"
wrk.headers["Sec-Fetch-Site"] = "same-origin"
wrk.headers["Cookie"] = "session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTgzMTkiLCJpYXQiOjE3MzMzNjAwMDB9.c2lnbmF0dXJlLW9mLXRoZS1zZXNzaW9u; _ga=GA1.1.1846390011.1733360000; _ga_ABCDEF1234=GS1.1.1733360000.3.1.1733360420.0.0.0; theme=dark; tz=Europe%2FBerlin"
wrk.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
wrk.headers["X-Requested-With"] = "XMLHttpRequest"
dofile(os.getenv("BENCH_REPORT_LUA"))
