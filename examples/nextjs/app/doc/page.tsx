import DocumentView from '@/components/DocumentView'
import { syncUrl } from '@/lib/config'

export const dynamic = 'force-dynamic'

// The document comes from `?name=` and is read in the browser, so this page
// is the same HTML for every document: the service worker serves it for any
// of them when the network is gone.
export default function DocPage () {
  return <DocumentView syncUrl={syncUrl()} />
}
