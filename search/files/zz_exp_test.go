package files

import "testing"

func TestZZExp(t *testing.T) {
	for _, s := range []string{
		"{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789,}}",
		"{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789},}",
		"{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": tru}}",
		"{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789 x}}",
		"{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\" \"port\": 4789}}",
		"{} ,",
		"{} x",
		"",
		"{",
	} {
		_, err := Parse("f.json", []byte(s), true)
		t.Logf("%q -> %v", s, err)
	}
}
